// The CUDA backend: bf16 weights and activations, one stream, FlashInfer kernels for attention,
// norms, rope and activation, cuBLASLt for GEMM. Everything is enqueued asynchronously; only
// to_host_f32(), free_memory_bytes(), cuda_synchronize() and PendingTokens::wait() wait for the
// device (and remaking a graph slot or dropping retired graph scratch, which must).
//
// CudaBackend is a thin composition of the parts, each in its own file:
//   cuda_context    device context, stream(s), staging pool, allocation
//   cuda_ops        elementwise ops and host<->device copies
//   cuda_gemm       linear() through cuBLASLt
//   fp8_gemm        upload_fp8_linear(), and linear() with an FP8 weight
//   cuda_attention  eager and graph-safe attention plans, their run (cuda_attention_plan: the
//                   level planner; cuda_graph_slots: the graph plans' fixed regions;
//                   attn_registry: the kernels of each configuration, compiled ahead or by the JIT)
//   cuda_graphs     graph capture/replay and forward-pass timing
//   cuda_sampler    sample_tokens_async and its reserved scratch (cuda_logprobs: the
//                   log-probabilities and logit_bias of a draw)
//   cuda_fused      fused forms of ops at small batches (silu_mul_linear as one GEMV)
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <optional>

#include "backend/cuda/cuda_attention.h"
#include "backend/cuda/cuda_decode_layer.h"
#include "backend/cuda/cuda_fused.h"
#include "backend/cuda/cuda_gemm.h"
#include "backend/cuda/cuda_graphs.h"
#include "backend/cuda/cuda_kv_copy.h"
#include "backend/cuda/cuda_kv_shift.h"
#include "backend/cuda/cuda_logprobs.h"
#include "backend/cuda/cuda_mla.h"
#include "backend/cuda/cuda_mla_expanded.h"
#include "backend/cuda/cuda_moe.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_sampler.h"
#include "backend/cuda/cuda_sparse.h"
#include "backend/cuda/fp8_gemm.h"
#include "backend/cuda/fp8_kv_support.h"
#include "backend/cuda/pdl.h"

namespace nc {
namespace {

using namespace cuda_host;

JitOptions jit_options(const CudaBackendOptions& options) {
  JitOptions o;
  o.cache_dir = options.jit_cache_dir;
  return o;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device_index, const CudaBackendOptions& options)
      : ctx_(open_device(device_index)),
        ops_(ctx_),
        gemm_(ctx_),
        fuse_(FuseOptions::from_env(options.fuse_small_ops)),
        fp8_(ctx_),
        graphs_(ctx_),
        registry_(std::make_shared<AttnRegistry>(jit_options(options), ctx_->device)),
        attention_(ctx_, options, graphs_, registry_),
        sparse_(ctx_, attention_),
        sampler_(ctx_),
        timer_(ctx_, graphs_),
        moe_(ctx_),
        mla_slots_(ctx_, graphs_),
        kv_copier_(ctx_),
        decode_layer_(ctx_, options.decode_layer) {}
  // As before the split: on the backend's device, once both streams are idle, the graphs go
  // before the slot and scratch buffers they read (the parts' destructors then free those).
  ~CudaBackend() override {
    cudaSetDevice(ctx_->device);
    cudaStreamSynchronize(ctx_->stream);
    if (ctx_->side) cudaStreamSynchronize(ctx_->side);
    graphs_.clear();
  }

  std::string name() const override { return ctx_->name; }
  Device device() const override { return Device::CUDA; }
  DType dtype() const override { return DType::BF16; }

  Tensor alloc(const Shape& shape, DType dtype) override {
    return device_alloc(ctx_, shape, dtype);
  }
  Tensor upload(const HostTensor& t) override { return ops_.upload(t); }
  // bf16 pages, and FP8 E4M3 pages (fp8 KV cache) on compute capability 8.9 or later: asking
  // for those on an older GPU throws an Unsupported nc::Error naming it (fp8_kv_support.h).
  bool supports_kv_dtype(DType t) const override {
    if (t != DType::F8E4M3) return t == DType::BF16;
    check_fp8_kv_device(ctx_->device, ctx_->name);
    return true;
  }
  void copy_from_host(Tensor dst, const void* src) override { ops_.copy_from_host(dst, src); }
  std::vector<float> to_host_f32(const Tensor& t) override { return ops_.to_host_f32(t); }
  int64_t free_memory_bytes() override { return device_free_memory_bytes(*ctx_); }
  void synchronize() { ctx_->synchronize(); }
  CublasLtGemm& gemm() { return gemm_; }
  const GraphRunner& graphs() const { return graphs_; }
  Fp8Gemm& fp8() { return fp8_; }

  void embedding(const Tensor& table, const Tensor& ids, Tensor out) override {
    ops_.embedding(table, ids, out);
  }
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    ops_.rmsnorm(x, weight, eps, out);
  }
  void add_rmsnorm(Tensor x, Tensor residual, const Tensor& weight, float eps) override {
    ops_.add_rmsnorm(x, residual, weight, eps);
  }
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor out) override {
    if (w.dtype() == DType::F8E4M3)
      fp8_.linear(x, w, bias, out);
    else
      gemm_.linear(x, w, bias, out);
  }
  Tensor upload_fp8_linear(const Fp8Weight& w) override { return fp8_.upload(w); }
  void rope(Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin, int head_dim) {
    ops_.rope(q, k, positions, cos_sin, head_dim);
  }
  void qkv_split_norm_rope(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm, float eps,
                           const Tensor& positions, const Tensor& cos_sin, int head_dim, Tensor q,
                           Tensor k, Tensor v) override {
    ops_.qkv_split_norm_rope(qkv, q_norm, k_norm, eps, positions, cos_sin, head_dim, q, k, v);
  }
  bool qkv_split_norm_rope_append(const AttentionPlan& plan, Tensor kv_pages, const Tensor& qkv,
                                  const Tensor& q_norm, const Tensor& k_norm, float eps,
                                  const Tensor& positions, const Tensor& cos_sin, int head_dim,
                                  Tensor q, Tensor k, Tensor v) override {
    cuda::KvAppendTarget target;
    const bool fused =
        k.ndim() == 2 &&
        fused_append_target(fuse_, plan, kv_pages, positions.numel(), k.dim(1), head_dim, &target);
    ops_.qkv_split_norm_rope(qkv, q_norm, k_norm, eps, positions, cos_sin, head_dim, q, k, v,
                             fused ? &target : nullptr);
    return fused;
  }
  void attention_appended(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                          const Tensor& v, Tensor kv_pages, Tensor out) override {
    NC_CHECK(!is_mla_plan(plan) && !is_sparse_plan(plan),
             "attention_appended: an MLA or sparse plan appends in its own op");
    attention_.run(plan, q, k, v, kv_pages, out, /*append=*/false);
  }
  bool decode_layer(const AttentionPlan& plan, Tensor kv_pages, const DecodeLayerWeights& w,
                    const DecodeLayerIo& io) override {
    return decode_layer_.run(plan, kv_pages, w, io);
  }
  void silu_and_mul(const Tensor& gate_up, Tensor out) override { ops_.silu_and_mul(gate_up, out); }
  void silu_mul_linear(const Tensor& gate_up, const Tensor& w, const Tensor& bias, Tensor out,
                       Tensor act) override {
    if (!fused_silu_mul_linear(*ctx_, fuse_, gate_up, w, bias, out))
      Backend::silu_mul_linear(gate_up, w, bias, out, act);
  }
  void add_rmsnorm_linear(Tensor x, const AddNorm& norm, const Tensor& w, const Tensor& bias,
                          Tensor out) override {
    if (w.dtype() == DType::F8E4M3 && fp8_.norm_fusable(x, norm))
      return fp8_.linear(x, w, bias, out, cuda_host::Fp8Path::Auto, false, &norm);
    Backend::add_rmsnorm_linear(x, norm, w, bias, out);
  }
  void silu_mlp(const Tensor& x, const Tensor& gate_up_w, const Tensor& down_w, Tensor gate_up,
                Tensor act, Tensor out, const AddNorm* norm) override {
    if (!fp8_.silu_mlp(x, gate_up_w, down_w, gate_up, out, norm))
      Backend::silu_mlp(x, gate_up_w, down_w, gate_up, act, out, norm);
  }
  void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor ids,
                 Tensor weights) override {
    moe_.route(logits, bias, r, ids, weights);
  }
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const Tensor& gate_up,
                   const Tensor& down, Tensor out) override {
    moe_.experts(x, ids, weights, gate_up, down, out);
  }
  int64_t reserve_moe(int max_tokens, int top_k, int num_experts, int hidden, int inter) override {
    return moe_.reserve(max_tokens, top_k, num_experts, hidden, inter);
  }
  void gelu_tanh_and_mul(const Tensor& gate_up, Tensor out) override {
    ops_.gelu_tanh_and_mul(gate_up, out);
  }
  void scale(Tensor x, float s) override { ops_.scale(x, s); }
  void soft_cap(Tensor x, float cap) override { ops_.soft_cap(x, cap); }
  void apply_token_bitmask(Tensor logits, const Tensor& bitmask) override {
    ops_.apply_token_bitmask(logits, bitmask);
  }
  void copy_rows(const Tensor& src, Tensor dst) override { ops_.copy_rows(src, dst); }
  void add(Tensor x, const Tensor& y) override { ops_.add(x, y); }
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor out) override {
    ops_.gather_rows(x, rows, out);
  }
  void scatter_ids(const Tensor& src, const Tensor& pairs, Tensor dst) override {
    ops_.scatter_ids(src, pairs, dst);
  }
  void fill_uniform(Tensor t, uint64_t seed, float low, float high) override {
    ops_.fill_uniform(t, seed, low, high);
  }

  std::unique_ptr<AttentionPlan> plan_attention(const AttentionStep& step,
                                                const AttentionShape& shape) override {
    if (shape.latent_dim > 0) return plan_mla_step(ctx_, *registry_, step, shape);
    return attention_.plan(step, shape);
  }
  void attention(const AttentionPlan& plan, const Tensor& q, const Tensor& k, const Tensor& v,
                 Tensor kv_pages, Tensor out) override {
    NC_CHECK(!is_mla_plan(plan), "attention: an MLA plan (latent_dim > 0) runs mla_attention");
    NC_CHECK(!is_sparse_plan(plan),
             "attention: a plan_sparse_attention plan runs sparse_attention");
    attention_.run(plan, q, k, v, kv_pages, out);
  }

  // Query-aware sparse decode (cuda_sparse.h).
  void update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv, const Tensor& page_slots,
                          Tensor bounds) override {
    sparse_.update_page_bounds(kv_pages, kv, page_slots, bounds);
  }
  std::unique_ptr<AttentionPlan> plan_sparse_attention(const AttentionStep& step,
                                                       const AttentionShape& shape,
                                                       const PageSelection& sel) override {
    return sparse_.plan(step, shape, sel);
  }
  void sparse_attention(const AttentionPlan& plan, const Tensor& q, const Tensor& k,
                        const Tensor& v, Tensor kv_pages, const Tensor& bounds,
                        Tensor out) override {
    sparse_.run(plan, q, k, v, kv_pages, bounds, out);
  }

  void head_linear(const Tensor& x, const Tensor& w, Tensor out) override {
    mla_head_linear(*ctx_, x, w, out);
  }
  void mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                     const Tensor& positions, const Tensor& cos_sin, bool interleaved, int nope_dim,
                     Tensor q_mla, Tensor latent) override {
    cuda_host::mla_rope_norm(*ctx_, q, kv_a, kv_norm, eps, positions, cos_sin, interleaved,
                             nope_dim, q_mla, latent);
  }
  void mla_attention(const AttentionPlan& plan, const Tensor& q_mla, const Tensor& latent,
                     Tensor kv_pages, Tensor out) override {
    run_mla(ctx_, plan, q_mla, latent, kv_pages, out);
  }
  // The expanded form where the plan chose it for some entries (cuda_mla_expanded.h).
  void mla_attention_values(const AttentionPlan& plan, const Tensor& q, Tensor q_mla,
                            const Tensor& latent, Tensor kv_pages, const Tensor& w_uk_t,
                            const Tensor& w_uv, Tensor o_lat, Tensor attn) override {
    if (!run_mla_expanded(ctx_, plan, q, q_mla, latent, kv_pages, w_uk_t, w_uv, o_lat, attn))
      Backend::mla_attention_values(plan, q, q_mla, latent, kv_pages, w_uk_t, w_uv, o_lat, attn);
  }

  bool supports_graphs() const override { return true; }
  std::unique_ptr<AttentionPlan> plan_attention_graph(const AttentionStep& step,
                                                      const AttentionShape& shape, int slot,
                                                      int max_pages) override {
    if (shape.latent_dim > 0) return mla_slots_.plan(step, shape, slot, max_pages);  // mla_graph.h
    return attention_.plan_for_graph(step, shape, slot, max_pages);
  }
  void begin_capture() override { graphs_.begin_capture(); }
  void end_capture(int key) override { graphs_.end_capture(key); }
  bool has_graph(int key) const override { return graphs_.has_graph(key); }
  void replay(int key) override { graphs_.replay(key); }
  void clear_graphs() override {
    graphs_.clear();
    attention_.free_retired_scratch();
  }

  int64_t reserve_sampling(int max_rows, int vocab) override {
    return sampler_.reserve(max_rows, vocab);
  }
  std::unique_ptr<PendingTokens> sample_tokens_async(const Tensor& logits,
                                                     const std::vector<RowSampling>& rows,
                                                     Tensor ids) override {
    // Log-probabilities (of the raw logits) and logit_bias, on the device (cuda_logprobs.h);
    // structured output's token bitmasks are applied to the logits in place, then the draw.
    std::optional<DeviceRowExtras> extras;
    if (std::any_of(rows.begin(), rows.end(), [](const RowSampling& p) { return p.has_extras(); }))
      extras.emplace(ctx_, logits, rows);
    const std::vector<RowSampling> unmasked = apply_row_bitmasks(logits, rows);
    if (extras) extras->apply_bias();
    std::unique_ptr<PendingTokens> drawn = sampler_.sample_async(logits, unmasked, ids);
    return extras ? extras->finish(ids, std::move(drawn)) : std::move(drawn);
  }

  // Uploads the rows' token bitmasks (rows without one allow every token) and applies them to
  // `logits` in place; returns the rows without their bitmasks (the device sampler ignores them).
  std::vector<RowSampling> apply_row_bitmasks(const Tensor& logits,
                                              const std::vector<RowSampling>& rows) {
    std::vector<RowSampling> out = rows;
    if (std::none_of(rows.begin(), rows.end(),
                     [](const RowSampling& p) { return !p.token_bitmask.empty(); }))
      return out;
    const int64_t R = logits.dim(0), W = (logits.dim(1) + 31) / 32;
    std::vector<int32_t> words(size_t(R * W), -1);
    for (size_t r = 0; r < rows.size() && int64_t(r) < R; ++r) {
      const std::vector<int32_t>& m = rows[r].token_bitmask;
      NC_CHECK(m.empty() || int64_t(m.size()) == W,
               "sample_tokens: row {} has a bitmask of {} words for {} ids", r, m.size(),
               logits.dim(1));
      std::copy(m.begin(), m.end(), words.begin() + int64_t(r) * W);
      out[r].token_bitmask.clear();
    }
    Tensor mask = device_alloc(ctx_, {R, W}, DType::I32);  // freed in stream order
    ops_.copy_from_host(mask, words.data());
    ops_.apply_token_bitmask(logits, mask);
    return out;
  }

  std::unique_ptr<HostBuffer> alloc_host_buffer(int64_t bytes) override {
    return kv_copier_.alloc_host(bytes);
  }
  void copy_kv_pages(const std::vector<Tensor>& layers, std::span<const KVPageCopy> copies,
                     HostBuffer& host) override {
    kv_copier_.copy(layers, copies, host);
  }
  void sync_kv_copies() override { kv_copier_.sync(); }
  void shift_key_positions(Tensor kv_pages, const KVCacheShape& kv, const Tensor& shifts,
                           const Tensor& inv_freq) override {
    cuda_shift_key_positions(*ctx_, kv_pages, kv, shifts, inv_freq);
  }
  int64_t host_tier_device_bytes(int64_t page_bytes) const override {
    return KvCopier::staging_bytes(page_bytes);
  }
  int64_t graph_memory_bytes() const override {
    return attention_.graph_device_bytes() + mla_slots_.device_bytes();
  }

  void mark_pass_begin() override { timer_.mark_pass_begin(); }
  void mark_pass_end() override { timer_.mark_pass_end(); }
  double device_busy_seconds() override { return timer_.busy_seconds(); }
  KernelBuildStats kernel_builds() const override {
    const JitStats st = registry_->stats();
    return {st.compiles, st.hits, st.compile_seconds};
  }
  const Context& context() const { return *ctx_; }
  DecodeLayerRunner& decode_layer_runner() { return decode_layer_; }

 private:
  // Destroyed in reverse order: the parts before the context they share.
  std::shared_ptr<Context> ctx_;
  CudaOps ops_;
  CublasLtGemm gemm_;
  FuseOptions fuse_;
  Fp8Gemm fp8_;
  GraphRunner graphs_;
  std::shared_ptr<AttnRegistry> registry_;
  CudaAttention attention_;
  CudaSparse sparse_;
  CudaSampler sampler_;
  PassTimer timer_;
  CudaMoe moe_;
  MlaGraphSlots mla_slots_;
  KvCopier kv_copier_;
  DecodeLayerRunner decode_layer_;
};

CudaBackend& cuda_backend(Backend& b, const char* what) {
  auto* cb = dynamic_cast<CudaBackend*>(&b);
  NC_CHECK(cb != nullptr, "{}: backend {} is not the CUDA backend", what, b.name());
  return *cb;
}

std::vector<bool> levels_on(const AttentionPlan& plan, LevelKernel kernel, const char* what) {
  std::vector<bool> out;
  for (LevelKernel k : plan_level_kernels(plan, what)) out.push_back(k == kernel);
  return out;
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options) {
  return std::make_unique<CudaBackend>(device_index, options);
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return make_cuda_backend(device_index, CudaBackendOptions{});
}

void cuda_synchronize(Backend& cuda) {
  cuda_backend(cuda, "cuda_synchronize").synchronize();
}

int cuda_device_of(Backend& cuda) {
  return cuda_backend(cuda, "cuda_device_of").context().device;
}

void* cuda_stream_of(Backend& cuda) {
  return cuda_backend(cuda, "cuda_stream_of").context().stream;
}

namespace cuda_host {
CublasLtGemm& cuda_gemm(Backend& b) {
  return cuda_backend(b, "cuda_gemm").gemm();
}
Fp8Gemm& cuda_fp8_gemm(Backend& b) {
  return cuda_backend(b, "cuda_fp8_gemm").fp8();
}
}  // namespace cuda_host

void cuda_rope(Backend& cuda, Tensor q, Tensor k, const Tensor& positions, const Tensor& cos_sin,
               int head_dim) {
  cuda_backend(cuda, "cuda_rope").rope(q, k, positions, cos_sin, head_dim);
}

void cuda_set_pdl(bool on) {
  cuda::set_pdl_enabled(on);
}

bool cuda_pdl_enabled() {
  return cuda::pdl_enabled();
}

CudaGraphStats cuda_graph_stats(Backend& cuda, int key) {
  const cuda_host::GraphStats st = cuda_backend(cuda, "cuda_graph_stats").graphs().stats(key);
  return {st.nodes, st.kernels, st.programmatic_edges};
}

std::vector<int> cuda_graph_keys(Backend& cuda) {
  return cuda_backend(cuda, "cuda_graph_keys").graphs().keys();
}

std::vector<uint64_t> cuda_decode_layer_trace(Backend& cuda) {
  return cuda_backend(cuda, "cuda_decode_layer_trace").decode_layer_runner().take_trace();
}

std::vector<bool> cuda_plan_uses_decode_kernel(const AttentionPlan& plan) {
  return levels_on(plan, LevelKernel::Decode, "cuda_plan_uses_decode_kernel");
}

std::vector<bool> cuda_plan_uses_sm90_prefill(const AttentionPlan& plan) {
  return levels_on(plan, LevelKernel::SM90Prefill, "cuda_plan_uses_sm90_prefill");
}

std::vector<int32_t> cuda_sparse_selected_pages(const AttentionPlan& plan) {
  return sparse_plan_selected_pages(plan);
}

std::vector<int> cuda_sparse_entry_pages(const AttentionPlan& plan) {
  return sparse_plan_entry_pages(plan);
}

std::vector<bool> cuda_plan_uses_generic_kernel(const AttentionPlan& plan) {
  return levels_on(plan, LevelKernel::Generic, "cuda_plan_uses_generic_kernel");
}

}  // namespace nc
