// Sparse decode attention on the CUDA backend (cuda_sparse.h).
#include "backend/cuda/cuda_sparse.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "backend/cuda/sparse_kernels.h"

namespace nc::cuda_host {
namespace {

// One entry read sparsely: its pages [0, n), forced [0, c0) and [c1, n), `keep` candidates.
struct SparseEntryShape {
  int b = 0;
  int n = 0, c0 = 0, c1 = 0, keep = 0;
  int kept() const { return c0 + (n - c1) + keep; }
};

// The CPU rule's shape (page_selection.cc, keep_pages): sinks, the window's pages and the last
// page are forced; the candidates between them are all full pages, so the budget left after the
// forced pages takes floor(left / page_size) of them.
SparseEntryShape entry_shape(int b, int n, int kv_len, int page_size, int budget,
                             const PageSelection& sel) {
  SparseEntryShape s;
  s.b = b;
  s.n = n;
  const int first_window = std::max(0, kv_len - sel.window_tokens) / page_size;
  s.c0 = std::min(sel.sink_pages, n);
  s.c1 = std::max(s.c0, std::min(first_window, n - 1));
  const int forced_tokens = kv_len - (s.c1 - s.c0) * page_size;
  const int left = budget - forced_tokens;
  s.keep = left > 0 ? std::min(s.c1 - s.c0, left / page_size) : 0;
  return s;
}

// The CUDA-only refusals (MLA, head dims), then the rule's own checks (budgets against sinks +
// window, per-entry budget count, windowed layers: kv/page_selection.h).
void check_selection(const AttentionStep& step, const PageSelection& sel,
                     const AttentionShape& shape) {
  NC_CHECK(shape.latent_dim == 0, "sparse attention: an MLA layer (latent_dim {}) has no selection",
           shape.latent_dim);
  NC_CHECK(cuda::sparse_head_dim_supported(shape.head_dim),
           "sparse attention: head_dim {} not supported (64, 96, 128, 256)", shape.head_dim);
  NC_CHECK(!step.levels.empty(), "sparse attention plan: no levels");
  // Per-KV-head selection (kv/head_selection.h) is on the CPU only: its attention reads head
  // pages (a page stride of one head's block, V Hk blocks after K), which the FlashInfer page
  // view (attn_common.cuh make_paged_kv) does not express yet (docs/sparse.md).
  NC_CHECK_AS(ErrorKind::Unsupported, !sel.per_head,
              "sparse attention: per-KV-head selection (--sparse-per-head) is not implemented on "
              "the CUDA backend; use per-request selection there");
  check_page_selection(step, sel, shape.kv.page_size, shape.window_left);
}

class CudaSparsePlan final : public AttentionPlan {
 public:
  explicit CudaSparsePlan(std::shared_ptr<Context> c) : ctx(std::move(c)), scratch(ctx) {}

  const CudaAttentionPlan& attn() const { return static_cast<const CudaAttentionPlan&>(*dense); }
  int32_t* selected_indices() const {
    const CudaAttentionPlan& p = attn();
    return p.staging.dev_ptr(p.levels.back().arrays.kv_indices);
  }

  std::shared_ptr<Context> ctx;
  std::unique_ptr<AttentionPlan> dense;  // a CudaAttentionPlan over the selected step's shape
  int num_entries = 0, max_candidates = 0;
  std::vector<int> entry_pages;  // planned pages per own-level entry
  StagedArray<int32_t> entries, full_indices;
  float* scores = nullptr;
  // Declared after `dense`: the region and the buffers go before the plan they serve.
  StreamBuffers scratch;
  PooledStaging meta;
  StagingView meta_view;
};

const CudaSparsePlan& sparse_plan(const AttentionPlan& plan, const char* what) {
  const auto* p = dynamic_cast<const CudaSparsePlan*>(&plan);
  NC_CHECK(p != nullptr, "{}: not a CUDA sparse plan (plan_sparse_attention makes one)", what);
  return *p;
}

void validate_levels(const AttentionStep& step, const AttentionShape& shape) {
  NC_CHECK(!step.levels.empty(), "sparse attention plan: no levels");
  for (size_t l = 0; l < step.levels.size(); ++l) {
    try {
      step.levels[l].validate(step.num_tokens, shape.kv.page_size, shape.kv.num_pages);
    } catch (const Error& e) {
      fail("sparse attention plan: level {}: {}", l, e.what());
    }
  }
}

// The selected own level (placeholder ids: the forced pages and the first `keep` candidates)
// and the sparse entries' shapes.
PagedKVBatch selected_level(const PagedKVBatch& own, int ps, const PageSelection& sel,
                            std::vector<SparseEntryShape>& sparse) {
  PagedKVBatch out;
  out.causal = own.causal;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int n = own.num_pages(b), kv_len = own.kv_len(b, ps);
    const int32_t* pages = own.kv_indices.data() + own.kv_indptr[b];
    if (!entry_is_sparse(own, b, sel, ps)) {
      out.add_pages(own.q_len(b), std::span<const int32_t>(pages, size_t(n)), kv_len, ps);
      continue;
    }
    const SparseEntryShape s = entry_shape(b, n, kv_len, ps, sel.budget(b), sel);
    NC_CHECK(
        s.kept() == selected_page_count(n, own.kv_last_page_len[size_t(b)], ps, sel.budget(b), sel),
        "sparse attention plan: entry {} keeps {} pages, the CPU rule {}", b, s.kept(),
        selected_page_count(n, own.kv_last_page_len[size_t(b)], ps, sel.budget(b), sel));
    std::vector<int32_t> kept(pages, pages + s.c0 + s.keep);
    kept.insert(kept.end(), pages + s.c1, pages + n);
    out.add_pages(1, kept, (s.kept() - 1) * ps + own.kv_last_page_len[size_t(b)], ps);
    sparse.push_back(s);
  }
  return out;
}

// The entries' table and full page lists into the plan's own staging region, copied once.
void stage_entries(CudaSparsePlan& plan, const PagedKVBatch& own, const PagedKVBatch& selected,
                   const std::vector<SparseEntryShape>& sparse) {
  StagingLayout lay;
  int total = 0;
  for (const SparseEntryShape& s : sparse) total += s.n;
  plan.entries = lay.add<int32_t>(sparse.size() * cuda::kSparseEntryFields);
  plan.full_indices = lay.add<int32_t>(size_t(total));
  plan.meta = PooledStaging(plan.ctx, lay.size());
  plan.meta_view = StagingView(plan.meta.get());
  int32_t* table = plan.meta_view.host_ptr(plan.entries);
  int32_t* full = plan.meta_view.host_ptr(plan.full_indices);
  int off = 0;
  for (size_t i = 0; i < sparse.size(); ++i) {
    const SparseEntryShape& s = sparse[i];
    int32_t* row = table + i * cuda::kSparseEntryFields;
    std::fill_n(row, cuda::kSparseEntryFields, 0);
    row[cuda::kSeQRow] = own.qo_indptr[size_t(s.b)];
    row[cuda::kSeSrcOff] = off;
    row[cuda::kSeNumPages] = s.n;
    row[cuda::kSeCand0] = s.c0;
    row[cuda::kSeCand1] = s.c1;
    row[cuda::kSeKeep] = s.keep;
    row[cuda::kSeOutOff] = selected.kv_indptr[size_t(s.b)];
    std::memcpy(full + off, own.kv_indices.data() + own.kv_indptr[size_t(s.b)], size_t(s.n) * 4);
    off += s.n;
    if (s.keep > 0 && s.keep < s.c1 - s.c0)
      plan.max_candidates = std::max(plan.max_candidates, s.c1 - s.c0);
  }
  const Staging& st = plan.meta.get();
  cuda_check(cudaMemcpyAsync(st.dev, st.host, lay.size(), cudaMemcpyHostToDevice, plan.ctx->stream),
             "sparse attention plan metadata copy");
  cuda_check(cudaEventRecord(st.copied, plan.ctx->stream), "cudaEventRecord");
  plan.scores = static_cast<float*>(plan.scratch.get(size_t(std::max(total, 1)) * sizeof(float)));
}

}  // namespace

void CudaSparse::update_page_bounds(const Tensor& kv_pages, const KVCacheShape& kv,
                                    const Tensor& page_slots, Tensor bounds) {
  NC_CHECK(!kv.latent, "update_page_bounds: an MLA (latent) cache has no per-head keys");
  NC_CHECK(kv.num_pages >= 1 && kv.page_size >= 1 && kv.num_kv_heads >= 1 && kv.head_dim >= 2 &&
               kv.head_dim % 2 == 0,
           "update_page_bounds: cache shape pages {}, page size {}, kv heads {}, head dim {} "
           "(head dim even)",
           kv.num_pages, kv.page_size, kv.num_kv_heads, kv.head_dim);
  expect_kv_pages(kv_pages, kv, "update_page_bounds pages");
  NC_CHECK(kv_pages.numel() == int64_t(kv.num_pages) * kv.elems_per_page(),
           "update_page_bounds: pages {} do not hold {} pages of {} elements",
           shape_str(kv_pages.shape()), kv.num_pages, kv.elems_per_page());
  expect_i32(page_slots, "update_page_bounds page_slots");
  NC_CHECK(page_slots.ndim() == 2 && page_slots.dim(1) == 2,
           "update_page_bounds: page_slots {} is not [P, 2]", shape_str(page_slots.shape()));
  expect_cuda(bounds, "update_page_bounds bounds");
  bounds.expect_dtype(DType::F32, "update_page_bounds bounds");
  bounds.expect_contiguous("update_page_bounds bounds");
  bounds.expect_shape({kv.num_pages, 2, kv.num_kv_heads, kv.head_dim}, "update_page_bounds bounds");
  cuda::PageBoundsArgs a;
  a.pages = kv_pages.data();
  a.fp8 = kv.fp8;
  a.k_scale = kv.k_scale;
  a.bounds = static_cast<float*>(bounds.data());
  a.page_slots = static_cast<const int32_t*>(page_slots.data());
  a.num_listed = int(page_slots.dim(0));
  a.num_pages = kv.num_pages;
  a.page_size = kv.page_size;
  a.num_kv_heads = kv.num_kv_heads;
  a.head_dim = kv.head_dim;
  a.hnd = kv.layout == KVLayout::HND;
  k_call([&] { cuda::update_page_bounds(a, ctx_->stream); });
}

std::unique_ptr<AttentionPlan> CudaSparse::plan(const AttentionStep& step,
                                                const AttentionShape& shape,
                                                const PageSelection& sel) {
  validate_levels(step, shape);
  check_selection(step, sel, shape);  // before the shape: an MLA shape is refused as such
  validate_attention_shape(shape);
  const int ps = shape.kv.page_size;
  const PagedKVBatch& own = step.levels.back();
  std::vector<SparseEntryShape> sparse;
  AttentionStep selected = step;
  selected.levels.back() = selected_level(own, ps, sel, sparse);
  auto plan = std::make_unique<CudaSparsePlan>(ctx_);
  // Unsplit: the selection kernel writes the own level's page list of this one plan.
  plan->dense = attention_.plan_unsplit(selected, shape);
  plan->num_entries = int(sparse.size());
  const PagedKVBatch& sel_own = selected.levels.back();
  for (int b = 0; b < sel_own.batch_size(); ++b) plan->entry_pages.push_back(sel_own.num_pages(b));
  if (!sparse.empty()) stage_entries(*plan, own, sel_own, sparse);
  return plan;
}

void CudaSparse::run(const AttentionPlan& plan_base, const Tensor& q, const Tensor& k,
                     const Tensor& v, Tensor kv_pages, const Tensor& bounds, Tensor out) {
  const CudaSparsePlan& plan = sparse_plan(plan_base, "sparse_attention");
  NC_CHECK(plan.ctx == ctx_, "sparse_attention: plan was not made by this backend");
  const CudaAttentionPlan& attn = plan.attn();
  const AttentionShape& sh = attn.shape;
  if (plan.num_entries > 0 && attn.num_tokens > 0) {
    expect_bf16(q, "sparse_attention q");
    q.expect_contiguous("sparse_attention q");
    q.expect_shape({attn.num_tokens, int64_t(sh.num_qo_heads) * sh.head_dim}, "sparse_attention q");
    expect_cuda(bounds, "sparse_attention bounds");
    bounds.expect_dtype(DType::F32, "sparse_attention bounds");
    bounds.expect_contiguous("sparse_attention bounds");
    bounds.expect_shape({sh.kv.num_pages, 2, sh.num_kv_heads, sh.head_dim},
                        "sparse_attention bounds");
    cuda::SparseSelectArgs a;
    a.q = q.data();
    a.bounds = static_cast<const float*>(bounds.data());
    a.entries = plan.meta_view.dev_ptr(plan.entries);
    a.full_indices = plan.meta_view.dev_ptr(plan.full_indices);
    a.scores = plan.scores;
    a.out_indices = plan.selected_indices();
    a.num_entries = plan.num_entries;
    a.max_candidates = plan.max_candidates;
    a.num_qo_heads = sh.num_qo_heads;
    a.num_kv_heads = sh.num_kv_heads;
    a.head_dim = sh.head_dim;
    k_call([&] {
      cuda::sparse_page_scores(a, ctx_->stream);
      cuda::sparse_select_pages(a, ctx_->stream);
    });
  }
  attention_.run(*plan.dense, q, k, v, kv_pages, out);
}

bool is_sparse_plan(const AttentionPlan& plan) {
  return dynamic_cast<const CudaSparsePlan*>(&plan) != nullptr;
}

std::vector<int32_t> sparse_plan_selected_pages(const AttentionPlan& plan_base) {
  const CudaSparsePlan& plan = sparse_plan(plan_base, "sparse_plan_selected_pages");
  const CudaAttentionPlan& attn = plan.attn();
  std::vector<int32_t> out(attn.levels.back().arrays.kv_indices.count);
  plan.ctx->synchronize();
  if (!out.empty())
    cuda_check(
        cudaMemcpy(out.data(), plan.selected_indices(), out.size() * 4, cudaMemcpyDeviceToHost),
        "sparse_plan_selected_pages copy");
  return out;
}

std::vector<int> sparse_plan_entry_pages(const AttentionPlan& plan) {
  return sparse_plan(plan, "sparse_plan_entry_pages").entry_pages;
}

}  // namespace nc::cuda_host
