// Graph-safe MLA plans (contract: mla_graph.h).
#include "backend/cuda/mla_graph.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/mla_plan.h"

namespace nc::cuda_host {

// Byte offsets of one level's arrays in the slot's staging region.
struct MlaSlotLevel {
  size_t indptr = 0, qo_indptr = 0, last_page_len = 0, row_entry = 0, indices = 0;
  size_t fi_int = 0;  // FlashInfer's int workspace (FlashInfer kernels only)
};

struct MlaGraphSlots::Slot {
  int levels = 0, batch = 0, max_pages = 0, heads = 0, latent_dim = 0, page_size = 0;
  MlaKernel kernel = MlaKernel::Fallback;
  Staging staging;
  std::vector<MlaSlotLevel> lv;
  size_t dst_page = 0, dst_slot = 0;
  size_t head_bytes = 0;  // bytes before the first page list (copied as one block)
  void* merge = nullptr;  // lse | lse_level | o_level (two or more levels)
  size_t merge_bytes = 0;

  bool fits(int nl, int B, int mp, const AttentionShape& sh, MlaKernel k) const {
    return levels == nl && batch == B && max_pages == mp && heads == sh.num_qo_heads &&
           latent_dim == sh.latent_dim && page_size == sh.kv.page_size && kernel == k;
  }
  int32_t* host(size_t off) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(staging.host) + off);
  }
  int32_t* dev(size_t off) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(staging.dev) + off);
  }
};

namespace {

using Slot = MlaGraphSlots::Slot;

// The two LSE arrays of the merge state, rounded to 16 bytes (the output after them is read
// in 16-byte vectors).
size_t lse_bytes(size_t rows) {
  return (2 * rows * sizeof(float) + 15) / 16 * 16;
}

size_t take(size_t& at, size_t count) {
  const size_t here = at;
  at = (at + count * sizeof(int32_t) + 15) / 16 * 16;
  return here;
}

void release(Slot& s) {
  release_staging(s.staging);
  if (s.merge) cudaFree(s.merge);
  s.merge = nullptr;
}

void make(Slot& s, const std::shared_ptr<Context>& ctx, int nl, int B, int mp,
          const AttentionShape& sh, MlaKernel kernel) {
  s.levels = nl, s.batch = B, s.max_pages = mp, s.heads = sh.num_qo_heads, s.kernel = kernel;
  s.latent_dim = sh.latent_dim, s.page_size = sh.kv.page_size;
  size_t at = 0;
  s.lv.assign(size_t(nl), MlaSlotLevel{});
  for (MlaSlotLevel& l : s.lv) {
    l.indptr = take(at, size_t(B) + 1);
    l.qo_indptr = take(at, size_t(B) + 1);
    l.last_page_len = take(at, size_t(B));
    l.row_entry = take(at, size_t(B));
  }
  s.dst_page = take(at, size_t(B));
  s.dst_slot = take(at, size_t(B));
  s.head_bytes = at;
  for (MlaSlotLevel& l : s.lv) l.indices = take(at, size_t(B) * size_t(mp));
  if (kernel != MlaKernel::Fallback)
    for (MlaSlotLevel& l : s.lv) l.fi_int = take(at, cuda::mla_fi_int_bytes() / sizeof(int32_t));
  s.staging.capacity = (at + 4095) / 4096 * 4096;
  cuda_check(cudaHostAlloc(&s.staging.host, s.staging.capacity, cudaHostAllocDefault),
             "cudaHostAlloc (mla graph plan)");
  std::memset(s.staging.host, 0, s.staging.capacity);
  cuda_check(cudaMalloc(&s.staging.dev, s.staging.capacity), "cudaMalloc (mla graph plan)");
  cuda_check(cudaEventCreateWithFlags(&s.staging.copied, cudaEventDisableTiming),
             "cudaEventCreate");
  cuda_check(cudaEventRecord(s.staging.copied, ctx->stream), "cudaEventRecord");
  if (nl > 1) {
    const size_t rows = size_t(B) * size_t(sh.num_qo_heads);
    s.merge_bytes = lse_bytes(rows) + rows * 2 * size_t(sh.latent_dim);
    cuda_check(cudaMalloc(&s.merge, s.merge_bytes), "cudaMalloc (mla graph merge state)");
  }
}

// Whether the step is a decode step a slot of max_pages pages per entry can plan.
bool graph_step(const AttentionStep& step, const AttentionShape& sh, int max_pages,
                MlaKernel kernel) {
  const size_t nl = step.levels.size();
  if (nl == 0 || max_pages < 1) return false;
  const PagedKVBatch& own = step.levels.back();
  const int B = own.batch_size();
  if (B == 0 || step.num_tokens != B) return false;
  for (const PagedKVBatch& level : step.levels)
    level.validate(step.num_tokens, sh.kv.page_size, sh.kv.num_pages);
  for (int b = 0; b < B; ++b)
    if (own.q_len(b) != 1 || own.num_pages(b) < 1 || own.num_pages(b) > max_pages) return false;
  for (size_t l = 0; l + 1 < nl; ++l) {
    const PagedKVBatch& in = step.levels[l];
    if (in.causal || in.batch_size() > B || int64_t(in.kv_indices.size()) > int64_t(B) * max_pages)
      return false;
  }
  if (kernel != MlaKernel::Fallback)
    for (const PagedKVBatch& level : step.levels)
      if (!fi_level_fits(level, B, sh.num_qo_heads)) return false;
  return true;
}

// Level `in` into the host side of `a`, padded to B entries (empty entries of no rows).
void stage_level(const Slot& s, const MlaSlotLevel& a, const PagedKVBatch& in) {
  const int B = s.batch, n = in.batch_size();
  int32_t *indptr = s.host(a.indptr), *qo = s.host(a.qo_indptr);
  int32_t *last = s.host(a.last_page_len), *rows = s.host(a.row_entry);
  for (int e = 0; e <= B; ++e) {
    indptr[e] = in.kv_indptr[size_t(std::min(e, n))];
    qo[e] = in.qo_indptr[size_t(std::min(e, n))];
  }
  for (int e = 0; e < B; ++e) last[e] = e < n ? in.kv_last_page_len[size_t(e)] : 0;
  for (int e = 0; e < n; ++e)
    for (int r = in.qo_indptr[size_t(e)]; r < in.qo_indptr[size_t(e) + 1]; ++r) rows[r] = e;
  std::copy(in.kv_indices.begin(), in.kv_indices.end(), s.host(a.indices));
}

}  // namespace

MlaGraphSlots::MlaGraphSlots(std::shared_ptr<Context> ctx, GraphRunner& graphs)
    : ctx_(std::move(ctx)), graphs_(graphs) {}

MlaGraphSlots::~MlaGraphSlots() {
  cudaStreamSynchronize(ctx_->stream);
  for (auto& [id, s] : slots_) release(*s);
  if (fi_float_.ptr) cudaFree(fi_float_.ptr);
}

MlaGraphSlots::Slot& MlaGraphSlots::get(int slot_id, int nl, int B, int mp,
                                        const AttentionShape& sh, MlaKernel kernel) {
  std::unique_ptr<Slot>& s = slots_[slot_id];
  if (s && s->fits(nl, B, mp, sh, kernel)) return *s;
  if (s) {
    ctx_->synchronize();  // nothing queued reads the old region any more
    release(*s);
    s.reset();
    // Every graph, not graph `slot_id`: a model with several layer kinds numbers its slots
    // key * kinds + kind (llama_graphs.cc), so the graph that read this slot has another key.
    graphs_.clear();
  }
  // Built aside and kept only once every allocation succeeded: a half-built slot would fit().
  auto fresh = std::make_unique<Slot>();
  try {
    make(*fresh, ctx_, nl, B, mp, sh, kernel);
    if (kernel != MlaKernel::Fallback) fi_float_.ensure(cuda::mla_fi_float_bytes());
  } catch (...) {
    release(*fresh);
    slots_.erase(slot_id);  // no null slot for the destructor or device_bytes() to meet
    throw;
  }
  s = std::move(fresh);
  return *s;
}

std::unique_ptr<AttentionPlan> MlaGraphSlots::plan(const AttentionStep& step,
                                                   const AttentionShape& sh, int slot_id,
                                                   int max_pages) {
  const MlaKernel kernel = mla_kernel(sh);
  if (!graph_step(step, sh, max_pages, kernel)) return nullptr;
  const int nl = int(step.levels.size()), B = step.num_tokens, ps = sh.kv.page_size;
  Slot& s = get(slot_id, nl, B, max_pages, sh, kernel);
  // The host side is rewritten only once its last copy has run.
  cuda_check(cudaEventSynchronize(s.staging.copied), "waiting for an MLA plan's metadata copy");
  auto plan = std::make_unique<CudaMlaPlan>();
  plan->shape = sh;
  plan->num_tokens = B;
  for (int l = 0; l < nl; ++l) {
    const MlaSlotLevel& a = s.lv[size_t(l)];
    stage_level(s, a, step.levels[size_t(l)]);
    cuda::MlaLevel v;
    v.indptr = s.dev(a.indptr), v.indices = s.dev(a.indices);
    v.last_page_len = s.dev(a.last_page_len), v.qo_indptr = s.dev(a.qo_indptr);
    v.row_entry = s.dev(a.row_entry);
    v.page_size = ps;
    v.causal = step.levels[size_t(l)].causal;
    plan->levels.push_back(v);
  }
  const PagedKVBatch& own = step.levels.back();
  for (int b = 0; b < B; ++b) {  // one new token per entry, the last of its pages
    s.host(s.dst_page)[b] = own.kv_indices[size_t(own.kv_indptr[size_t(b) + 1] - 1)];
    s.host(s.dst_slot)[b] = own.kv_last_page_len[size_t(b)] - 1;
  }
  plan->dst_page = s.dev(s.dst_page);
  plan->dst_slot = s.dev(s.dst_slot);
  if (nl > 1) {
    const size_t rows = size_t(B) * size_t(sh.num_qo_heads);
    char* m = static_cast<char*>(s.merge);
    plan->lse = reinterpret_cast<float*>(m);
    plan->lse_level = plan->lse + rows;
    plan->o_level = m + lse_bytes(rows);
  }
  std::vector<size_t> fi_staged(size_t(nl), 0);
  if (kernel != MlaKernel::Fallback) {  // FlashInfer's schedules, into each level's region
    plan->kernel = kernel;
    plan->fi_float = fi_float_.ptr;
    for (int l = 0; l < nl; ++l) {
      const size_t off = s.lv[size_t(l)].fi_int;
      FiLevel fl = plan_fi_level(step.levels[size_t(l)], B, sh.num_qo_heads, ps, s.host(off),
                                 s.dev(off), fi_float_, &fi_staged[size_t(l)]);
      fl.kv_indices = plan->levels[size_t(l)].indices;
      plan->fi.push_back(std::move(fl));
    }
  }
  const cudaStream_t st = ctx_->stream;
  cuda_check(
      cudaMemcpyAsync(s.staging.dev, s.staging.host, s.head_bytes, cudaMemcpyHostToDevice, st),
      "mla graph plan copy");
  for (int l = 0; l < nl; ++l) {
    const size_t n = step.levels[size_t(l)].kv_indices.size() * sizeof(int32_t);
    const size_t off = s.lv[size_t(l)].indices;
    if (n > 0)
      cuda_check(cudaMemcpyAsync(s.dev(off), s.host(off), n, cudaMemcpyHostToDevice, st),
                 "mla graph page table copy");
    const size_t fi = s.lv[size_t(l)].fi_int;
    if (fi_staged[size_t(l)] > 0)
      cuda_check(
          cudaMemcpyAsync(s.dev(fi), s.host(fi), fi_staged[size_t(l)], cudaMemcpyHostToDevice, st),
          "mla graph plan (FlashInfer) copy");
  }
  cuda_check(cudaEventRecord(s.staging.copied, st), "cudaEventRecord");
  return plan;
}

int64_t MlaGraphSlots::device_bytes() const {
  size_t n = 0;
  for (const auto& [id, s] : slots_) n += s->staging.capacity + s->merge_bytes;
  return int64_t(n + fi_float_.bytes);
}

}  // namespace nc::cuda_host
