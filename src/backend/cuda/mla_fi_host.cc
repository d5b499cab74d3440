// The host side of FlashInfer's MLA kernels (contract: mla_fi_host.h).
#include "backend/cuda/mla_fi_host.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/kernels.h"

namespace nc::cuda_host {

namespace {

// MLAPlan's arrays hold 16384 work items; its splits add at most one per SM (under 1024 here).
constexpr int64_t kMaxWorks = 16384, kMostSms = 1024;

bool fi_shape(const AttentionShape& s) {
  return s.latent_dim == cuda::kMlaFiLatentDim &&
         s.head_dim == cuda::kMlaFiLatentDim + cuda::kMlaFiRopeDim && !s.kv.fp8 &&
         s.num_qo_heads > 0;
}

}  // namespace

const char* mla_kernel_name(MlaKernel k) {
  switch (k) {
    case MlaKernel::Fallback:
      return "fallback";
    case MlaKernel::FA2:
      return "fa2";
    case MlaKernel::SM90:
      return "sm90";
  }
  return "?";
}

MlaKernel mla_kernel(const AttentionShape& shape) {
  if (!fi_shape(shape)) return MlaKernel::Fallback;
  const bool sm90 = cuda::mla_fi_sm90_available();
  const char* env = std::getenv("NC_MLA_KERNEL");
  const std::string want = env ? env : "";
  if (want == "fallback") return MlaKernel::Fallback;
  if (want == "fa2") return MlaKernel::FA2;
  NC_CHECK(want.empty() || want == "auto" || want == "sm90",
           "NC_MLA_KERNEL='{}': expected auto, fallback, fa2 or sm90", want);
  return sm90 ? MlaKernel::SM90 : MlaKernel::FA2;
}

bool fi_level_fits(const PagedKVBatch& level, int entries, int heads) {
  if (entries < level.batch_size() || entries <= 0) return false;
  // MLAPlan's tile: 64 packed (row, head) pairs a CTA, two CTAs a cluster when the average
  // entry packs more than 64 (with entries >= rows: when heads > 64).
  const int64_t avg = int64_t(level.qo_indptr.back()) * heads / entries;
  const int64_t tile = avg > 64 ? 128 : 64;
  int64_t tiles = 0;
  for (int b = 0; b < level.batch_size(); ++b)
    tiles += (int64_t(level.q_len(b)) * heads + tile - 1) / tile;
  return tiles + kMostSms <= kMaxWorks;
}

FiLevel plan_fi_level(const PagedKVBatch& level, int entries, int heads, int page_size,
                      void* int_host, void* int_dev, const FloatWorkspace& ws,
                      size_t* staged_bytes) {
  const int n = level.batch_size();
  NC_CHECK(entries >= n, "mla plan: {} entries padded to {}", n, entries);
  std::vector<int32_t> qo(size_t(entries) + 1), kv(size_t(entries) + 1), len(size_t(entries), 0);
  for (int e = 0; e <= entries; ++e) {
    qo[size_t(e)] = level.qo_indptr[size_t(std::min(e, n))];
    kv[size_t(e)] = level.kv_indptr[size_t(std::min(e, n))];
  }
  for (int e = 0; e < n; ++e) len[size_t(e)] = level.kv_len(e, page_size);
  cuda::MlaFiPlanArgs a;
  a.qo_indptr_h = qo.data();
  a.kv_indptr_h = kv.data();
  a.kv_len_h = len.data();
  a.batch_size = entries;
  a.num_heads = heads;
  a.causal = level.causal;
  a.int_dev = int_dev;
  a.int_host = int_host;
  a.float_dev = ws.ptr;
  a.float_bytes = ws.bytes;
  FiLevel out;
  k_call([&] { out.info = cuda::mla_fi_plan(a, staged_bytes); });
  out.causal = level.causal;
  out.int_dev = int_dev;
  return out;
}

void run_fi_levels(const FiRun& r, cudaStream_t stream) {
  const size_t n = r.levels->size();
  constexpr int Dl = cuda::kMlaFiLatentDim;
  for (size_t l = 0; l < n; ++l) {
    const FiLevel& L = (*r.levels)[l];
    const bool first = l == 0;
    cuda::MlaFiRunArgs a;
    a.info = &L.info;
    a.int_dev = L.int_dev;
    a.float_dev = r.float_ws;
    a.q = r.q;
    a.pages = r.pages;
    a.kv_indices = L.kv_indices;
    a.out = first ? r.out : r.o_level;
    a.lse = n == 1 ? nullptr : (first ? r.lse : r.lse_level);
    a.page_size = r.page_size;
    a.heads = r.heads;
    a.sm_scale = r.sm_scale;
    a.causal = L.causal;
    k_call([&] {
      if (r.kernel == MlaKernel::SM90)
        cuda::mla_fi_run_sm90(a, stream);
      else
        cuda::mla_fi_run_fa2(a, stream);
      // One (row, head) per CTA: [rows * heads, 1, 512] is the same memory as [rows, heads, 512].
      if (!first)
        cuda::merge_state_inplace(r.out, r.lse, r.o_level, r.lse_level, int(r.rows * r.heads), 1,
                                  Dl, stream);
    });
  }
}

}  // namespace nc::cuda_host
