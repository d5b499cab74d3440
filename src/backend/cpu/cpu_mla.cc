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
  float max_s = -std::numeric_limits<float>::infinity();
  for (float x : scores) max_s = std::max(max_s, x);
  float sum = 0.0f;
  for (float& x : scores) {
    x = std::exp(x - max_s);
    sum += x;
  }
  const float inv_sum = 1.0f / sum;
  for (float& x : scores) x *= inv_sum;
  for_runs([&](int i, int n, int64_t off) {
    rk.accumulate(scores.data() + i, pages + off, D, n, Dl, out);
  });
  if (lse) *lse = max_s * kLog2e + std::log2(sum);
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
  std::vector<int> entry_of_row(static_cast<size_t>(T));
  for (int b = 0; b < batch.batch_size(); ++b)
    std::fill(entry_of_row.begin() + batch.qo_indptr[b],
              entry_of_row.begin() + batch.qo_indptr[b + 1], b);
  ThreadPool::global().parallel_for(T * H, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / H;
      const int b = entry_of_row[size_t(row)];
      const int kv_len = batch.kv_len(b, s.kv.page_size);
      const int pos = kv_len - batch.q_len(b) + int(row - batch.qo_indptr[b]);
      attend_row(batch, s, b, 0, batch.causal ? pos + 1 : kv_len, q + item * D, pages,
                 out + item * Dl, lse ? lse + item : nullptr, scores);
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
  NC_CHECK(pages_t.numel() == int64_t(s.kv.num_pages) * s.kv.elems_per_page(),
           "mla: page tensor of shape {} for {} pages of {} values", shape_str(pages_t.shape()),
           s.kv.num_pages, s.kv.elems_per_page());
  float* pages = f32_data(pages_t, "mla pages");
  cpu_mla_append(step.levels.back(), s.kv, f32_data(latent, "mla latent"), pages);
  float* o = f32_data(out, "mla output");
  const float* pq = f32_data(q, "mla q");
  if (step.levels.size() == 1) {
    cpu_mla_paged_attention(step.levels[0], s, pq, pages, o, nullptr);
    return;
  }
  // Each level's output is a latent vector per (row, head): the states merge as any attention's.
  std::vector<float> lse(size_t(T * H)), o_level(size_t(T * H * Dl)), lse_level(size_t(T * H));
  cpu_mla_paged_attention(step.levels[0], s, pq, pages, o, lse.data());
  for (size_t l = 1; l < step.levels.size(); ++l) {
    cpu_mla_paged_attention(step.levels[l], s, pq, pages, o_level.data(), lse_level.data());
    merge_attention_states(o, lse.data(), o_level.data(), lse_level.data(), T, int(H), int(Dl));
  }
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
      for (int64_t m = 0; m < M; ++m) {
        const float* wr = pw + (h * M + m) * K;
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += xi[k] * wr[k];
        po[t * H * So + h * So + m] = acc;
      }
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

}  // namespace nc
