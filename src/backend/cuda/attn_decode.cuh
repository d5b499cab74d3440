// The decode table: batch decode over paged KV (one query row per entry), one head dim, variant
// and page element type (KV: bf16, or fp8 with the params' v_scale) per instantiation
// (attn_decode_hd*.cu ahead of time, attn_jit_entry.cuh at run time). bf16 pages run FlashInfer's
// CUDA-core kernel; fp8 pages our tensor-core kernel (attn_decode_fp8.cuh) where
// fp8_decode_rule.h lets it, else FlashInfer's. Planning lives here too: its work estimation
// needs the kernel's occupancy, hence the kernel's template.
#pragma once
#include <flashinfer/attention/decode.cuh>

#include <algorithm>
#include <cstdlib>

#include "backend/cuda/attn_common.cuh"
#include "backend/cuda/attn_decode_fp8.cuh"
#include "backend/cuda/fp8_decode_rule.h"

namespace nc::cuda {

// Calls f.template operator()<GROUP_SIZE>() for the GQA group sizes the decode kernel supports.
template <typename F>
cudaError_t dispatch_group_size(int group, F&& f) {
  switch (group) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    case 4:
      return f.template operator()<4>();
    case 6:
      return f.template operator()<6>();
    case 8:
      return f.template operator()<8>();
    case 16:
      return f.template operator()<16>();
    default:
      throw std::runtime_error("decode: unsupported GQA group size " + std::to_string(group));
  }
}

// The instantiations our FP8 kernel is compiled into (FP8 pages, head dim 64 or 128), and
// whether a configuration decodes on it at run time (fp8_decode_rule.h); plan and run agree.
template <uint32_t HEAD_DIM, typename KV>
constexpr bool kOwnFp8Instance = sizeof(KV) == 1 && (HEAD_DIM == 64 || HEAD_DIM == 128);

template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV>
bool own_fp8_decode_path(int group) {
  if constexpr (kOwnFp8Instance<HEAD_DIM, KV>)
    return own_fp8_decode_serves(group, int(HEAD_DIM), WINDOW, SOFT_CAP);
  return false;
}

template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
void decode_plan_impl(const PlanQuery& q, const PlanWorkspace* ws, PlanInfo* out, size_t* fbytes,
                      size_t* ibytes, cudaStream_t stream) {
  using V = Variant<WINDOW, SOFT_CAP>;
  using Params = DecodeParamsT<KV>;
  flashinfer::DecodePlanInfo plan;
  fi_call("decode plan", [&] {
    return dispatch_group_size(q.num_qo_heads / q.num_kv_heads, [&]<uint32_t GROUP>() {
      auto estimate = [&](bool& split, uint32_t& grid, uint32_t& pages, uint32_t& new_batch,
                          uint32_t& gdy, uint32_t batch, int32_t* indptr_h, uint32_t qo_heads,
                          uint32_t page_size, bool graph, cudaStream_t s) {
        if constexpr (kOwnFp8Instance<HEAD_DIM, KV>) {
          if (own_fp8_decode_path<HEAD_DIM, WINDOW, SOFT_CAP, KV>(GROUP))
            return fp8_decode::estimate_work<HEAD_DIM, Params>(split, grid, pages, new_batch, gdy,
                                                               batch, indptr_h, page_size, graph,
                                                               qo_heads / GROUP, GROUP > 8);
        }
        return flashinfer::BatchDecodeWithPagedKVCacheWorkEstimationDispatched<
            GROUP, HEAD_DIM, flashinfer::PosEncodingMode::kNone, V, Params>(
            split, grid, pages, new_batch, gdy, batch, indptr_h, qo_heads, page_size, graph, s);
      };
      int32_t* indptr = const_cast<int32_t*>(q.kv_indptr_h);
      if (ws == nullptr) {
        return flashinfer::DecodePlanWorkspaceSize<HEAD_DIM, flashinfer::PosEncodingMode::kNone, V,
                                                   Params>(*fbytes, *ibytes, indptr, q.batch_size,
                                                           q.num_qo_heads, q.page_size,
                                                           q.cuda_graph, stream, estimate);
      }
      return flashinfer::DecodePlan<HEAD_DIM, flashinfer::PosEncodingMode::kNone, V, Params>(
          ws->float_ws, ws->float_bytes, ws->int_ws, ws->int_pinned, ws->int_bytes, plan, indptr,
          q.batch_size, q.num_qo_heads, q.page_size, q.cuda_graph, stream, estimate);
    });
  });
  if (out != nullptr) *out = plan.ToVector();
}

// FP8 pages: FlashInfer's decode kernel with TILE tokens per (lane row, stage) instead of the one
// its dispatcher gives GQA groups above 1 (it gives group 1 two). One FP8 token is half a bf16
// token's bytes, so with one token a stage each warp has half the bytes in flight that it has
// over bf16 pages. Measured on an H100 (2026-12-06, `nc_gpu_bench fp8kv`, batch 64-256 x 2k-8k):
// at group 2 two tokens take 2-10% less time than one at every point (and four no less than
// two); from group 4 the kernel is bound by its per-head arithmetic, not by bytes in flight (its
// time doubles with the group at any tile), and two or four tokens are no faster. So group 2
// takes two, the others FlashInfer's own dispatch; NC_FP8_DECODE_TILE (1: FlashInfer's, 2, 4)
// overrides for an A/B. The launch is otherwise FlashInfer's: grid (padded batch, KV heads),
// block (bdx, group, bdz), two shared-memory stages, then its merge of the split-KV partials.
inline int fp8_decode_tile(int group) {
  static const int forced = [] {
    const char* e = std::getenv("NC_FP8_DECODE_TILE");
    const int t = e && *e ? std::atoi(e) : 0;
    return t == 1 || t == 2 || t == 4 ? t : 0;
  }();
  return forced != 0 ? forced : group == 2 ? 2 : 1;
}

template <uint32_t HEAD_DIM, uint32_t TILE, typename V, typename Params>
cudaError_t decode_fp8_launch(Params p, bf16* tmp_v, float* tmp_s, cudaStream_t stream) {
  using KV = typename Params::DTypeKV;
  // FlashInfer's choice from compute capability 8 on; FP8 pages need 8.9 (fp8_kv_support.h).
  constexpr uint32_t kStages = 2;
  constexpr uint32_t vec = std::max<uint32_t>(16 / sizeof(KV), HEAD_DIM / 32);
  constexpr uint32_t bdx = HEAD_DIM / vec;
  const uint32_t num_qo_heads = p.num_qo_heads, num_kv_heads = p.paged_kv.num_heads;
  return dispatch_group_size(int(num_qo_heads / num_kv_heads), [&]<uint32_t GROUP>() {
    constexpr uint32_t bdy = GROUP;
    constexpr uint32_t threads = std::max<uint32_t>(128, bdx * bdy);
    constexpr uint32_t bdz = threads / (bdx * bdy);
    const size_t smem =
        std::max<size_t>(2 * kStages * TILE * bdy * bdz * HEAD_DIM * sizeof(KV),
                         bdz * bdy * HEAD_DIM * sizeof(float)) +
        std::max<size_t>(TILE * threads * sizeof(KV*), 2 * bdy * bdz * sizeof(float));
    auto kernel =
        flashinfer::BatchDecodeWithPagedKVCacheKernel<flashinfer::PosEncodingMode::kNone, kStages,
                                                      TILE, vec, bdx, bdy, bdz, V, Params>;
    cudaError_t st =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (st != cudaSuccess) return st;
    const dim3 grid(p.padded_batch_size, num_kv_heads), block(bdx, bdy, bdz);
    return fp8_decode::launch_then_merge<HEAD_DIM>(
        p, tmp_v, tmp_s, stream, /*pdl=*/false, [&](Params& q) {
          void* args[] = {static_cast<void*>(&q)};
          return cudaLaunchKernel(reinterpret_cast<void*>(kernel), grid, block, args, smem, stream);
        });
  });
}

template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
void decode_run_hd(const PlanInfo& plan_vec, const PlanWorkspace& ws, const PagedKV& kv,
                   const AttnIO& io, cudaStream_t stream) {
  flashinfer::DecodePlanInfo plan;
  plan.FromVector(plan_vec);
  DecodeParamsT<KV> p;
  set_common_params(p, kv, io);
  set_work_indices(p, plan, ws);
  bf16* tmp_v = nullptr;
  float* tmp_s = nullptr;
  if (plan.split_kv) {
    tmp_v = at_offset<bf16>(ws.float_ws, plan.v_offset);
    tmp_s = at_offset<float>(ws.float_ws, plan.s_offset);
    if (plan.enable_cuda_graph) {
      p.block_valid_mask = at_offset<bool>(ws.int_ws, plan.block_valid_mask_offset);
    }
  }
  if constexpr (kOwnFp8Instance<HEAD_DIM, KV>) {
    // Our grid's y is the padded batch (at most 65535 blocks); FlashInfer's kernel, whose batch
    // is x, runs any plan of this table too.
    if (own_fp8_decode_path<HEAD_DIM, WINDOW, SOFT_CAP, KV>(io.num_qo_heads / kv.num_kv_heads) &&
        p.padded_batch_size <= fp8_decode::kMaxGridY) {
      fi_call("batch decode (fp8, ours)",
              [&] { return fp8_decode::launch<HEAD_DIM>(p, tmp_v, tmp_s, stream, io.pdl); });
      return;
    }
  }
  if constexpr (sizeof(KV) == 1) {
    if (const int tile = fp8_decode_tile(io.num_qo_heads / kv.num_kv_heads); tile != 1) {
      using V = Variant<WINDOW, SOFT_CAP>;
      fi_call("batch decode (fp8)", [&] {
        return tile == 2 ? decode_fp8_launch<HEAD_DIM, 2, V>(p, tmp_v, tmp_s, stream)
                         : decode_fp8_launch<HEAD_DIM, 4, V>(p, tmp_v, tmp_s, stream);
      });
      return;
    }
  }
  fi_call("batch decode", [&] {
    return flashinfer::BatchDecodeWithPagedKVCacheDispatched<
        HEAD_DIM, flashinfer::PosEncodingMode::kNone, Variant<WINDOW, SOFT_CAP>>(p, tmp_v, tmp_s,
                                                                                 io.pdl, stream);
  });
}

}  // namespace nc::cuda

namespace nc::cuda {

// The table of one decode configuration (attn_kernels.h); `key` must outlive it (a literal).
template <uint32_t HEAD_DIM, bool WINDOW, bool SOFT_CAP, typename KV = bf16>
const AttnKernelTable* decode_table(const char* key) {
  static const AttnKernelTable table{kAttnTableAbi, key,
                                     &decode_plan_impl<HEAD_DIM, WINDOW, SOFT_CAP, KV>,
                                     &decode_run_hd<HEAD_DIM, WINDOW, SOFT_CAP, KV>, nullptr};
  return &table;
}

}  // namespace nc::cuda
