// MLA on the CPU (contract: cpu_mla.h).
#include "backend/cpu/cpu_mla.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention_rows.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_isa.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace nc {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

const attn::RowKernels& row_kernels() {
  static const attn::RowKernels k =
      cpu_isa_active() == CpuIsa::Avx2 ? attn::avx2_rows() : attn::kPortableRows;
  return k;
}

float* f32_data(const Tensor& t, const char* what) {
  t.expect_dtype(DType::F32, what);
  t.expect_device(Device::CPU, what);
  t.expect_contiguous(what);
  return t.ptr<float>();
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Each query row's entry in batch.
std::vector<int> entry_of_rows(const PagedKVBatch& batch) {
  std::vector<int> entry(static_cast<size_t>(batch.qo_indptr.back()));
  for (int b = 0; b < batch.batch_size(); ++b)
    std::fill(entry.begin() + batch.qo_indptr[b], entry.begin() + batch.qo_indptr[b + 1], b);
  return entry;
}

// Row i of entry b: the keys [0, limit) it attends (causal: up to its own position).
int key_limit(const PagedKVBatch& batch, int b, int i, int ps) {
  const int kv_len = batch.kv_len(b, ps);
  return batch.causal ? kv_len - batch.q_len(b) + i + 1 : kv_len;
}

// scores -> softmax(scores) in place; *lse (if given) = the base-2 log-sum-exp.
void softmax_in_place(std::vector<float>& scores, float* lse) {
  float max_s = -std::numeric_limits<float>::infinity();
  for (float x : scores) max_s = std::max(max_s, x);
  float sum = 0.0f;
  for (float& x : scores) {
    x = std::exp(x - max_s);
    sum += x;
  }
  const float inv_sum = 1.0f / sum;
  for (float& x : scores) x *= inv_sum;
  if (lse) *lse = max_s * kLog2e + std::log2(sum);
}

// The page tensor's data, checked against the shape's pool.
float* mla_pages(const Tensor& pages, const AttentionShape& s) {
  NC_CHECK(pages.numel() == int64_t(s.kv.num_pages) * s.kv.elems_per_page(),
           "mla: page tensor of shape {} for {} pages of {} values", shape_str(pages.shape()),
           s.kv.num_pages, s.kv.elems_per_page());
  return f32_data(pages, "mla pages");
}

// out [T, H * dim] over every level of the step: level(l, out_l, lse_l) writes level l's rows
// (lse_l null when there is one level); the levels' states merge by their LSE.
template <typename Level>
void attend_levels(const AttentionStep& step, int64_t T, int64_t H, int64_t dim, float* out,
                   Level&& level) {
  if (step.levels.size() == 1) return level(size_t(0), out, nullptr);
  std::vector<float> lse(size_t(T * H)), o_level(size_t(T * H * dim)), lse_level(size_t(T * H));
  level(size_t(0), out, lse.data());
  for (size_t l = 1; l < step.levels.size(); ++l) {
    level(l, o_level.data(), lse_level.data());
    merge_attention_states(out, lse.data(), o_level.data(), lse_level.data(), T, int(H), int(dim));
  }
}

// Element offset of the row of token `pos` of entry b.
int64_t row_offset(const PagedKVBatch& batch, const KVCacheShape& kv, int b, int pos) {
  const int32_t page = batch.kv_indices[batch.kv_indptr[b] + pos / kv.page_size];
  return int64_t(page) * kv.elems_per_page() + kv.offset_in_page(0, pos % kv.page_size, 0);
}

// One (row, head) over keys [lo, hi) of entry b: softmax(q.K^T * scale) times the c_kv parts.
void attend_row(const PagedKVBatch& batch, const AttentionShape& s, int b, int lo, int hi,
                const float* q, const float* pages, float* out, float* lse,
                std::vector<float>& scores) {
  const attn::RowKernels& rk = row_kernels();
  const int D = s.head_dim, Dl = s.latent_dim, ps = s.kv.page_size, n_keys = hi - lo;
  std::fill(out, out + Dl, 0.0f);
  if (n_keys <= 0) {
    if (lse) *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  scores.resize(size_t(n_keys));
  // Runs of keys within one page: slot rows lie head_dim apart.
  auto for_runs = [&](auto&& fn) {
    for (int j = lo; j < hi;) {
      const int n = std::min(ps - j % ps, hi - j);
      fn(j - lo, n, row_offset(batch, s.kv, b, j));
      j += n;
    }
  };
  for_runs([&](int i, int n, int64_t off) {
    rk.scores(q, pages + off, D, n, D, s.sm_scale, scores.data() + i);
  });
  softmax_in_place(scores, lse);
  for_runs([&](int i, int n, int64_t off) {
    rk.accumulate(scores.data() + i, pages + off, D, n, Dl, out);
  });
}

}  // namespace

void check_mla_shape(const AttentionShape& s) {
  NC_CHECK(s.latent_dim > 0 && s.latent_dim < s.head_dim,
           "mla: latent_dim {} must lie in (0, head_dim {})", s.latent_dim, s.head_dim);
  NC_CHECK(
      s.kv.latent && s.num_kv_heads == 1 && s.kv.num_kv_heads == 1 && s.kv.head_dim == s.head_dim,
      "mla: pages must be latent with one head of {} values (got latent={}, {} heads of {})",
      s.head_dim, s.kv.latent, s.kv.num_kv_heads, s.kv.head_dim);
  NC_CHECK(s.window_left == -1 && s.logits_soft_cap == 0.0f,
           "mla: no window or soft cap (window_left {}, logits_soft_cap {})", s.window_left,
           s.logits_soft_cap);
}

void cpu_mla_append(const PagedKVBatch& batch, const KVCacheShape& kv, const float* latent,
                    float* pages) {
  const int D = kv.head_dim;
  for (int b = 0; b < batch.batch_size(); ++b) {
    const int q_len = batch.q_len(b), first = batch.kv_len(b, kv.page_size) - q_len;
    for (int j = 0; j < q_len; ++j)
      std::copy_n(latent + int64_t(batch.qo_indptr[b] + j) * D, D,
                  pages + row_offset(batch, kv, b, first + j));
  }
}

void cpu_mla_paged_attention(const PagedKVBatch& batch, const AttentionShape& s, const float* q,
                             const float* pages, float* out, float* lse) {
  const int H = s.num_qo_heads, D = s.head_dim, Dl = s.latent_dim;
  const int64_t T = batch.qo_indptr.back();
  const std::vector<int> entry_of_row = entry_of_rows(batch);
  ThreadPool::global().parallel_for(T * H, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / H;
      const int b = entry_of_row[size_t(row)];
      const int n = key_limit(batch, b, int(row - batch.qo_indptr[b]), s.kv.page_size);
      attend_row(batch, s, b, 0, n, q + item * D, pages, out + item * Dl,
                 lse ? lse + item : nullptr, scores);
    }
  });
}

void cpu_mla_attention(const AttentionStep& step, const AttentionShape& s, const Tensor& q,
                       const Tensor& latent, Tensor pages_t, Tensor out) {
  check_mla_shape(s);
  const int64_t T = step.num_tokens, H = s.num_qo_heads, Dl = s.latent_dim;
  q.expect_shape({T, H * s.head_dim}, "mla q");
  latent.expect_shape({T, s.head_dim}, "mla latent");
  out.expect_shape({T, H * Dl}, "mla output");
  float* pages = mla_pages(pages_t, s);
  cpu_mla_append(step.levels.back(), s.kv, f32_data(latent, "mla latent"), pages);
  const float* pq = f32_data(q, "mla q");
  // Each level's output is a latent vector per (row, head): the states merge as any attention's.
  attend_levels(step, T, H, Dl, f32_data(out, "mla output"), [&](size_t l, float* o, float* lse) {
    cpu_mla_paged_attention(step.levels[l], s, pq, pages, o, lse);
  });
}

void cpu_head_linear(const Tensor& x, const Tensor& w, Tensor out) {
  NC_CHECK(w.ndim() == 3 && x.ndim() == 2 && out.ndim() == 2 && x.dim(0) == out.dim(0),
           "head_linear: shapes x {}, w {}, out {}", shape_str(x.shape()), shape_str(w.shape()),
           shape_str(out.shape()));
  const int64_t T = x.dim(0), H = w.dim(0), M = w.dim(1), K = w.dim(2);
  NC_CHECK(x.dim(1) % H == 0 && out.dim(1) % H == 0 && K <= x.dim(1) / H && M <= out.dim(1) / H,
           "head_linear: w {} does not fit x {} and out {}", shape_str(w.shape()),
           shape_str(x.shape()), shape_str(out.shape()));
  const int64_t Sx = x.dim(1) / H, So = out.dim(1) / H;
  const float* px = f32_data(x, "head_linear x");
  const float* pw = f32_data(w, "head_linear w");
  float* po = f32_data(out, "head_linear out");
  ThreadPool::global().parallel_for(T * H, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / H, h = item % H;
      const float* xi = px + t * H * Sx + h * Sx;
      for (int64_t m = 0; m < M; ++m)
        po[t * H * So + h * So + m] = dot(xi, pw + (h * M + m) * K, K);
    }
  });
}

namespace {

// Rotates one rope part of 2 * half values from src into dst by the position's cos c and sin s.
void rope_part(const float* src, float* dst, const float* c, const float* s, int half,
               bool interleaved) {
  for (int i = 0; i < half; ++i) {
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x1 = src[a], x2 = src[b];
    dst[a] = x1 * c[i] - x2 * s[i];
    dst[b] = x2 * c[i] + x1 * s[i];
  }
}

}  // namespace

void cpu_mla_rope_norm(const Tensor& q, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                       const Tensor& positions, const Tensor& cos_sin, bool interleaved,
                       int nope_dim, Tensor q_mla, Tensor latent) {
  const int64_t T = positions.numel(), Dr = cos_sin.dim(1), D = kv_a.dim(1), Dl = D - Dr;
  const int64_t H = q.dim(1) / (nope_dim + Dr), max_pos = cos_sin.dim(0);
  NC_CHECK(Dl > 0 && Dr % 2 == 0 && q.dim(1) == H * (nope_dim + Dr) && kv_norm.numel() == Dl,
           "mla_rope_norm: q {}, kv_a {}, kv_norm {}, rope dim {}", shape_str(q.shape()),
           shape_str(kv_a.shape()), shape_str(kv_norm.shape()), Dr);
  q_mla.expect_shape({T, H * D}, "mla_rope_norm q_mla");
  latent.expect_shape({T, D}, "mla_rope_norm latent");
  const int32_t* pos = positions.ptr<int32_t>();
  const float *pq = f32_data(q, "mla q"), *pa = f32_data(kv_a, "mla kv_a"),
              *pw = f32_data(kv_norm, "mla norm");
  const float* cs = f32_data(cos_sin, "mla rope table");
  float *qo = f32_data(q_mla, "mla q_mla"), *lat = f32_data(latent, "mla latent");
  const int half = int(Dr / 2);
  for (int64_t t = 0; t < T; ++t) {
    NC_CHECK(pos[t] >= 0 && pos[t] < max_pos, "mla_rope_norm: position {} outside [0, {})", pos[t],
             max_pos);
    const float* c = cs + int64_t(pos[t]) * Dr;
    for (int64_t h = 0; h < H; ++h)
      rope_part(pq + (t * H + h) * (nope_dim + Dr) + nope_dim, qo + (t * H + h) * D + Dl, c,
                c + half, half, interleaved);
    const float* a = pa + t * D;
    float ss = 0.0f;
    for (int64_t i = 0; i < Dl; ++i) ss += a[i] * a[i];
    const float inv = 1.0f / std::sqrt(ss / float(Dl) + eps);
    for (int64_t i = 0; i < Dl; ++i) lat[t * D + i] = pw[i] * (a[i] * inv);
    rope_part(a + Dl, lat + t * D + Dl, c, c + half, half, interleaved);
  }
}

// ---- The value-space op: the absorbed or the expanded form per entry ----

namespace {

// Per entry, the expanded form's projections count kProjectionCost each against the attention's
// multiply-adds (mla_form.h): their loops run at about half the attention row kernels' rate
// (bench/cpu/bench_mla_forms.cc, docs/benchmarks.md).
constexpr int64_t kProjectionCost = 2;
bool expanded_pays(const PagedKVBatch& batch, int b, int ps, const MlaDims& d) {
  return mla_expanded_pays(batch, b, ps, d, MlaFormCosts{kProjectionCost, 0});
}

// Entry b's keys [H][keys][Dn + Dr] (W_UK c_kv | k_pe) and values [H][keys][Dv] (W_UV c_kv).
void decompress_entry(const PagedKVBatch& batch, const AttentionShape& s, const MlaDims& d, int b,
                      const float* pages, const float* wuk_t, const float* wuv,
                      std::vector<float>& k, std::vector<float>& v) {
  const int64_t keys = batch.kv_len(b, s.kv.page_size), Dk = d.Dn + d.Dr;
  k.assign(size_t(d.H * keys * Dk), 0.0f);
  v.resize(size_t(d.H * keys * d.Dv));
  ThreadPool::global().parallel_for(keys * d.H, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t j = item / d.H, h = item % d.H;
      const float* c = pages + row_offset(batch, s.kv, b, int(j));
      float* kj = k.data() + (h * keys + j) * Dk;
      for (int64_t l = 0; l < d.Dl; ++l) {  // W_UK[h] = w_uk_t[h]^T: rows of w_uk_t[h] by l
        const float* w = wuk_t + (h * d.Dl + l) * d.Dn;
        for (int64_t n = 0; n < d.Dn; ++n) kj[n] += w[n] * c[l];
      }
      std::copy_n(c + d.Dl, d.Dr, kj + d.Dn);
      float* vj = v.data() + (h * keys + j) * d.Dv;
      for (int64_t m = 0; m < d.Dv; ++m) vj[m] = dot(wuv + (h * d.Dv + m) * d.Dl, c, d.Dl);
    }
  });
}

// Entry b's rows in the expanded form over its decompressed keys and values: out [T, H*Dv] and
// lse (base 2) at those rows.
void attend_expanded(const PagedKVBatch& batch, const AttentionShape& s, const MlaDims& d, int b,
                     const float* q, const float* q_mla, const std::vector<float>& k,
                     const std::vector<float>& v, float* out, float* lse) {
  const attn::RowKernels& rk = row_kernels();
  const int64_t keys = batch.kv_len(b, s.kv.page_size), Dk = d.Dn + d.Dr, r0 = batch.qo_indptr[b];
  ThreadPool::global().parallel_for(batch.q_len(b) * d.H, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, qk;
    qk.resize(size_t(Dk));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / d.H, h = item % d.H, row = r0 + i;
      const int n = key_limit(batch, b, int(i), s.kv.page_size);
      float* o = out + (row * d.H + h) * d.Dv;
      float* l = lse ? lse + row * d.H + h : nullptr;
      std::fill(o, o + d.Dv, 0.0f);
      if (n <= 0) {
        if (l) *l = -std::numeric_limits<float>::infinity();
        continue;
      }
      std::copy_n(q + (row * d.H + h) * Dk, d.Dn, qk.data());                     // q_nope
      std::copy_n(q_mla + (row * d.H + h) * d.D + d.Dl, d.Dr, qk.data() + d.Dn);  // rope(q_pe)
      scores.resize(size_t(n));
      rk.scores(qk.data(), k.data() + h * keys * Dk, Dk, n, int(Dk), s.sm_scale, scores.data());
      softmax_in_place(scores, l);
      rk.accumulate(scores.data(), v.data() + h * keys * d.Dv, d.Dv, n, int(d.Dv), o);
    }
  });
}

// One level in value space: every row's out [H*Dv] and lse; entries marked in `expanded` take
// that form, the others the absorbed one (q_mla's latent parts must be there for their rows).
void level_values(const PagedKVBatch& batch, const AttentionShape& s, const MlaDims& d,
                  const std::vector<char>& expanded, const float* q, const float* q_mla,
                  const float* pages, const float* wuk_t, const float* wuv, float* out,
                  float* lse) {
  const int64_t T = batch.qo_indptr.back();
  const std::vector<int> entry_of_row = entry_of_rows(batch);
  ThreadPool::global().parallel_for(T * d.H, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, o_lat;
    o_lat.resize(size_t(d.Dl));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / d.H, h = item % d.H;
      const int b = entry_of_row[size_t(row)];
      if (expanded[size_t(b)]) continue;
      const int n = key_limit(batch, b, int(row - batch.qo_indptr[b]), s.kv.page_size);
      attend_row(batch, s, b, 0, n, q_mla + item * d.D, pages, o_lat.data(),
                 lse ? lse + item : nullptr, scores);
      for (int64_t m = 0; m < d.Dv; ++m)
        out[item * d.Dv + m] = dot(wuv + (h * d.Dv + m) * d.Dl, o_lat.data(), d.Dl);
    }
  });
  std::vector<float> k, v;
  for (int b = 0; b < batch.batch_size(); ++b) {
    if (!expanded[size_t(b)]) continue;
    decompress_entry(batch, s, d, b, pages, wuk_t, wuv, k, v);
    attend_expanded(batch, s, d, b, q, q_mla, k, v, out, lse);
  }
}

}  // namespace

bool cpu_mla_expanded_pays(const PagedKVBatch& batch, int entry, const AttentionShape& s,
                           int nope_dim, int v_dim) {
  const MlaDims d{s.num_qo_heads, s.head_dim, s.latent_dim, s.head_dim - s.latent_dim,
                  nope_dim,       v_dim};
  return expanded_pays(batch, entry, s.kv.page_size, d);
}

void cpu_mla_attention_values(const AttentionStep& step, const AttentionShape& s, const Tensor& q,
                              Tensor q_mla, const Tensor& latent, Tensor pages_t,
                              const Tensor& w_uk_t, const Tensor& w_uv, Tensor attn) {
  check_mla_shape(s);
  NC_CHECK(w_uk_t.ndim() == 3 && w_uv.ndim() == 3 && w_uk_t.dim(0) == s.num_qo_heads &&
               w_uk_t.dim(1) == s.latent_dim && w_uv.dim(0) == s.num_qo_heads &&
               w_uv.dim(2) == s.latent_dim,
           "mla: w_uk_t {} and w_uv {} for {} heads of latent dim {}", shape_str(w_uk_t.shape()),
           shape_str(w_uv.shape()), s.num_qo_heads, s.latent_dim);
  const MlaDims d{s.num_qo_heads, s.head_dim, s.latent_dim, s.head_dim - s.latent_dim,
                  w_uk_t.dim(2),  w_uv.dim(1)};
  const int64_t T = step.num_tokens;
  q.expect_shape({T, d.H * (d.Dn + d.Dr)}, "mla q");
  q_mla.expect_shape({T, d.H * d.D}, "mla q_mla");
  latent.expect_shape({T, d.D}, "mla latent");
  attn.expect_shape({T, d.H * d.Dv}, "mla values");
  float* pages = mla_pages(pages_t, s);
  cpu_mla_append(step.levels.back(), s.kv, f32_data(latent, "mla latent"), pages);
  const float *pq = f32_data(q, "mla q"), *wuk = f32_data(w_uk_t, "mla w_uk_t"),
              *wuv = f32_data(w_uv, "mla w_uv");
  float* pqm = f32_data(q_mla, "mla q_mla");
  // Each entry's form, and the rows an absorbed entry reads q_mla's latent part of.
  const MlaForm form = mla_form();
  std::vector<std::vector<char>> expanded(step.levels.size());
  std::vector<char> needs_latent(size_t(T), 0);
  for (size_t lv = 0; lv < step.levels.size(); ++lv) {
    const PagedKVBatch& batch = step.levels[lv];
    for (int b = 0; b < batch.batch_size(); ++b) {
      const bool e = form == MlaForm::Expanded ||
                     (form == MlaForm::Auto && expanded_pays(batch, b, s.kv.page_size, d));
      expanded[lv].push_back(char(e));
      if (!e)
        std::fill(needs_latent.begin() + batch.qo_indptr[b],
                  needs_latent.begin() + batch.qo_indptr[b + 1], char(1));
    }
  }
  ThreadPool::global().parallel_for(T * d.H, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {  // q_mla latent = W_UK[h]^T q_nope
      const int64_t row = item / d.H, h = item % d.H;
      if (!needs_latent[size_t(row)]) continue;
      const float* qn = pq + item * (d.Dn + d.Dr);
      for (int64_t l = 0; l < d.Dl; ++l)
        pqm[item * d.D + l] = dot(wuk + (h * d.Dl + l) * d.Dn, qn, d.Dn);
    }
  });
  attend_levels(step, T, d.H, d.Dv, f32_data(attn, "mla values"),
                [&](size_t l, float* o, float* lse) {
                  level_values(step.levels[l], s, d, expanded[l], pq, pqm, pages, wuk, wuv, o, lse);
                });
}

}  // namespace nc
