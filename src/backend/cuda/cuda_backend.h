// The CUDA backend's own options (make_cuda_backend() in backend.h uses the defaults), and the
// entry points that only tests and benchmarks need (they are not part of the Backend interface;
// each throws nc::Error when given a backend or plan that is not the CUDA backend's).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace nc {

// Which kernel runs a level whose entries all have one query row (a decode step).
enum class DecodeKernel {
  Auto,         // by the table in decode_choice.cc (group, head_dim, batch, context); its default:
                // CUDA cores for GQA group sizes below 4, tensor cores (the prefill kernel) from 4
  CudaCores,    // FlashInfer's batch decode kernel
  TensorCores,  // FlashInfer's batch prefill kernel with q_len 1
};

// Which kernel runs a non-causal level (a cascade step's shared levels): FlashInfer's FA2 batch
// prefill or its Hopper (sm90, wgmma) one.
enum class SharedLevelKernel {
  Auto,  // sm90 where available (compute capability 9.0, head_dim 64/128), else FA2; the
         // environment variable NC_SHARED_LEVEL_KERNEL=fa2 forces FA2 (A/B benchmarking)
  FA2,
  SM90,  // where available, else FA2
};

// Whether a one-request decode step runs each dense layer as one persistent kernel
// (cuda_decode_layer.h).
enum class DecodeLayerMode {
  Auto,  // the environment's NC_DECODE_LAYER=1 / 0; unset, layers up to kDecodeLayerAutoMaxBytes
  On,
  Off,
};

struct CudaBackendOptions {
  DecodeKernel decode_kernel = DecodeKernel::Auto;
  // Cascade steps: run the shared levels on a second stream while the last (own) level runs on
  // the main one, and merge once both are done. The shared levels are compute-heavy (a prefill
  // over all sharers' rows) and the own level is bandwidth-bound, so they overlap well.
  bool overlap_cascade_levels = true;
  SharedLevelKernel shared_level_kernel = SharedLevelKernel::Auto;
  // The folder of run-time compiled attention kernels (docs/gpu.md, "JIT"); empty: NC_JIT_CACHE,
  // else $XDG_CACHE_HOME/nanocascade/jit, else ~/.cache/nanocascade/jit.
  std::string jit_cache_dir;
  // Fused small ops (cuda_fused.h: silu_mul_linear as one GEMV at one row, the K/V append in the
  // qkv prologue), where the environment allows them (cuda_fused.h: NC_FUSE=1 on, 0 off; unset:
  // off, measured slower on the 8B shape).
  bool fuse_small_ops = true;
  DecodeLayerMode decode_layer = DecodeLayerMode::Auto;
};

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options);

// Waits until everything enqueued on the backend's stream has run (benchmarks' timing brackets).
void cuda_synchronize(Backend& cuda);
// The backend's device and main stream (a cudaStream_t): NCCL's collectives run there, ordered
// with the model's kernels (backend/nccl.h).
int cuda_device_of(Backend& cuda);
void* cuda_stream_of(Backend& cuda);
// The standalone rope kernel (Backend's rope contract: in place, rotate-half; q: [T, Hq*D],
// k: [T, Hk*D], positions: i32 [T], cos_sin: [max_pos, D]); the model uses qkv_split_norm_rope.
void cuda_rope(Backend& cuda, Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin,
               int head_dim);

// Programmatic dependent launch of the backend's own small kernels (backend/cuda/pdl.h): on by
// default on compute capability 9.x; NC_PDL=0 or cuda_set_pdl(false) turn it off for launches
// (and graph captures) made after it, in the whole process. Results do not depend on it.
void cuda_set_pdl(bool on);
bool cuda_pdl_enabled();  // on, and the current device is 9.x
// What CUDA graph `key` of the backend (Backend::end_capture) holds: its nodes, kernel nodes and
// programmatic (PDL) edges; zeros when it has no such graph. cuda_graph_keys lists its graphs.
struct CudaGraphStats {
  int nodes = 0;
  int kernels = 0;
  int programmatic_edges = 0;
};
CudaGraphStats cuda_graph_stats(Backend& cuda, int key);
std::vector<int> cuda_graph_keys(Backend& cuda);

// The whole-layer decode kernel's trace (cuda_decode_layer.h, NC_DECODE_LAYER_TRACE=1 when the
// backend was made): [launches, then kDecodeLayerStamps ns stamps a launch], and starts over.
std::vector<uint64_t> cuda_decode_layer_trace(Backend& cuda);

// What the last plan_attention() chose per level (for tests and benchmarks): true where a level
// ran FlashInfer's CUDA-core decode kernel.
std::vector<bool> cuda_plan_uses_decode_kernel(const AttentionPlan& plan);
// Per level: true where it runs FlashInfer's Hopper (sm90) batch prefill.
std::vector<bool> cuda_plan_uses_sm90_prefill(const AttentionPlan& plan);
// Per level: true where it runs our kernel for head dims FlashInfer's cannot take (attn_generic.h).
std::vector<bool> cuda_plan_uses_generic_kernel(const AttentionPlan& plan);
// A plan_sparse_attention plan (cuda_sparse.h): the own level's page ids as its last
// sparse_attention selected them (synchronises), and the planned page count per own entry.
std::vector<int32_t> cuda_sparse_selected_pages(const AttentionPlan& plan);
std::vector<int> cuda_sparse_entry_pages(const AttentionPlan& plan);

}  // namespace nc
