// MLA on the CPU backend (latent pages) against a dense double reference in the expanded form
// (k_nope = W_UK c_kv and v = W_UV c_kv per head, then ordinary attention): page sizes 1, 4 and
// 16, prefills split into chunks, decodes, and a cascade step whose shared level holds a prefix
// two sequences share; each through the absorbed ops (head_linear, mla_attention, head_linear)
// and through mla_attention_values with each entry absorbed, expanded, or as the cost model
// chooses. Also the MLA prologue (mla_rope_norm) against a direct computation, for both rope
// layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_mla.h"
#include "core/host_tensor.h"

namespace nc {
namespace {

constexpr int H = 3, Dn = 8, Dr = 4, Dl = 12, Dv = 6, D = Dl + Dr;

struct Seq {
  int kv_len = 0;
  std::vector<int32_t> pages;
  std::vector<float> lat;     // [kv_len, D]: c_kv | k_pe (already rotated)
  std::vector<float> qn, qp;  // [kv_len, H, Dn], [kv_len, H, Dr]: the query of every token
};

struct Fixture {
  std::unique_ptr<Backend> be = make_cpu_backend();
  std::mt19937 rng{7};
  std::vector<float> wuk, wuv;  // [H, Dn, Dl] (kv_b_proj's k rows), [H, Dv, Dl]
  float scale = 1.0f / std::sqrt(float(Dn + Dr));
  Tensor pages;  // the latent pages, kept across one test's steps

  std::vector<float> randn(size_t n) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
  }
  Tensor upload(const std::vector<float>& v, const Shape& s) {
    return be->upload(HostTensor{s, v});
  }
  // The dense reference for token t of s: [H, Dv], double, causal over tokens 0..t.
  std::vector<double> reference(const Seq& s, int t) const {
    std::vector<double> out(H * Dv, 0.0);
    for (int h = 0; h < H; ++h) {
      std::vector<double> sc(size_t(t) + 1);
      double mx = -1e300;
      for (int j = 0; j <= t; ++j) {
        double dot = 0;
        for (int n = 0; n < Dn; ++n) {
          double k = 0;
          for (int l = 0; l < Dl; ++l) k += double(wuk[(h * Dn + n) * Dl + l]) * s.lat[j * D + l];
          dot += double(s.qn[(t * H + h) * Dn + n]) * k;
        }
        for (int r = 0; r < Dr; ++r)
          dot += double(s.qp[(t * H + h) * Dr + r]) * s.lat[j * D + Dl + r];
        sc[j] = dot * scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (double& x : sc) sum += (x = std::exp(x - mx));
      for (int j = 0; j <= t; ++j)
        for (int m = 0; m < Dv; ++m) {
          double v = 0;
          for (int l = 0; l < Dl; ++l) v += double(wuv[(h * Dv + m) * Dl + l]) * s.lat[j * D + l];
          out[h * Dv + m] += sc[j] / sum * v;
        }
    }
    return out;
  }
};

// A chunk of one sequence: its tokens [lo, hi), attended over entry pages (own level) with an
// optional shared level of `shared` pages (their tokens are not in the own entry).
struct Chunk {
  Seq* seq;
  int lo, hi;
  int shared_pages = 0;
};

// How a step computes the values: the three absorbed ops, or mla_attention_values in a form.
enum class Path { AbsorbedOps, Absorbed, Expanded, Auto };

// Runs one step over the chunks (rows in order); returns [T, H*Dv] and checks it against the
// reference. Chunks with shared pages > 0 get a shared level over those pages (one entry for all
// of them: they must share the same pages).
void run_step(Fixture& f, std::vector<Chunk> chunks, int ps, int num_pages, Path path) {
  AttentionStep step;
  PagedKVBatch own, shared;
  shared.causal = false;
  std::vector<float> qn, qp, lat;
  int shared_rows = 0;
  for (const Chunk& c : chunks) {
    const int q = c.hi - c.lo, skip = c.shared_pages * ps;
    const std::vector<int32_t> pages(c.seq->pages.begin() + c.shared_pages,
                                     c.seq->pages.begin() + (c.hi - 1) / ps + 1);
    own.add(q, pages, c.hi - skip, ps);
    if (c.shared_pages > 0) shared_rows += q;
    qn.insert(qn.end(), c.seq->qn.begin() + c.lo * H * Dn, c.seq->qn.begin() + c.hi * H * Dn);
    qp.insert(qp.end(), c.seq->qp.begin() + c.lo * H * Dr, c.seq->qp.begin() + c.hi * H * Dr);
    lat.insert(lat.end(), c.seq->lat.begin() + c.lo * D, c.seq->lat.begin() + c.hi * D);
  }
  const int T = int(lat.size() / D);
  step.num_tokens = T;
  if (shared_rows > 0) {
    const Chunk& c0 = chunks[0];
    shared.add(shared_rows,
               std::vector<int32_t>(c0.seq->pages.begin(), c0.seq->pages.begin() + c0.shared_pages),
               c0.shared_pages * ps, ps);
    if (shared_rows < T) shared.add(T - shared_rows, {}, 0, ps);
    step.levels.push_back(shared);
  }
  step.levels.push_back(own);
  AttentionShape shape{H, 1, D, f.scale, KVCacheShape{1, num_pages, ps, 1, D}};
  shape.kv.latent = true;
  shape.latent_dim = Dl;
  if (!f.pages.defined()) f.pages = f.be->alloc({num_pages, ps, 1, D}, DType::F32);
  // q_mla = [W_UK^T q_nope | q_pe]; the absorbed weight is [H, Dl, Dn].
  std::vector<float> wuk_t(H * Dl * Dn);
  for (int h = 0; h < H; ++h)
    for (int n = 0; n < Dn; ++n)
      for (int l = 0; l < Dl; ++l) wuk_t[(h * Dl + l) * Dn + n] = f.wuk[(h * Dn + n) * Dl + l];
  std::vector<float> q_host(size_t(T) * H * D, 0.0f);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      std::copy_n(qp.begin() + (t * H + h) * Dr, Dr, q_host.begin() + (t * H + h) * D + Dl);
  Tensor q_mla = f.upload(q_host, {T, H * D});
  Tensor out_lat = f.be->alloc({T, H * Dl}, DType::F32), out = f.be->alloc({T, H * Dv}, DType::F32);
  const Tensor wuk_t_dev = f.upload(wuk_t, {H, Dl, Dn}), wuv_dev = f.upload(f.wuv, {H, Dv, Dl});
  auto plan = f.be->plan_attention(step, shape);
  if (path == Path::AbsorbedOps) {
    f.be->head_linear(f.upload(qn, {T, H * Dn}), wuk_t_dev, q_mla);
    f.be->mla_attention(*plan, q_mla, f.upload(lat, {T, D}), f.pages, out_lat);
    f.be->head_linear(out_lat, wuv_dev, out);
  } else {
    std::vector<float> q_full;  // [T, H, Dn + Dr]: q_nope, then q_pe (the op reads q_mla's)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        q_full.insert(q_full.end(), qn.begin() + (t * H + h) * Dn,
                      qn.begin() + (t * H + h + 1) * Dn);
        q_full.insert(q_full.end(), qp.begin() + (t * H + h) * Dr,
                      qp.begin() + (t * H + h + 1) * Dr);
      }
    set_mla_form(path == Path::Absorbed   ? MlaForm::Absorbed
                 : path == Path::Expanded ? MlaForm::Expanded
                                          : MlaForm::Auto);
    f.be->mla_attention_values(*plan, f.upload(q_full, {T, H * (Dn + Dr)}), q_mla,
                               f.upload(lat, {T, D}), f.pages, wuk_t_dev, wuv_dev, out_lat, out);
    set_mla_form(MlaForm::Auto);
  }
  const std::vector<float> got = f.be->to_host_f32(out);
  int row = 0;
  for (const Chunk& c : chunks)
    for (int t = c.lo; t < c.hi; ++t, ++row) {
      const std::vector<double> want = f.reference(*c.seq, t);
      for (int i = 0; i < H * Dv; ++i)
        ASSERT_NEAR(got[row * H * Dv + i], want[i], 1e-4 * (1 + std::fabs(want[i])))
            << "token " << t << " value " << i << " page size " << ps;
    }
}

Seq make_seq(Fixture& f, int kv_len, int ps, int& next_page, const Seq* share = nullptr,
             int shared_tokens = 0) {
  Seq s;
  s.kv_len = kv_len;
  s.lat = f.randn(size_t(kv_len) * D);
  s.qn = f.randn(size_t(kv_len) * H * Dn);
  s.qp = f.randn(size_t(kv_len) * H * Dr);
  const int n = (kv_len + ps - 1) / ps, shared_pages = shared_tokens / ps;
  for (int p = 0; p < n; ++p) s.pages.push_back(p < shared_pages ? share->pages[p] : next_page++);
  if (share) std::copy_n(share->lat.begin(), shared_tokens * D, s.lat.begin());
  return s;
}

struct MlaCase {
  int page_size;
  Path path;
};

class CpuMla : public ::testing::TestWithParam<MlaCase> {};

TEST_P(CpuMla, ChunkedPrefillAndDecodeMatchDenseReference) {
  const int ps = GetParam().page_size;
  const Path path = GetParam().path;
  Fixture f;
  f.wuk = f.randn(H * Dn * Dl);
  f.wuv = f.randn(H * Dv * Dl);
  int next = 0;
  Seq a = make_seq(f, 23, ps, next), b = make_seq(f, 9, ps, next);
  const int num_pages = next + 2;
  // a's prompt in three chunks, b's in one, then decodes of the last tokens. (Auto: the second
  // step mixes the forms, b's whole prompt expanded beside a's one row absorbed.)
  run_step(f, {{&a, 0, 7}}, ps, num_pages, path);
  run_step(f, {{&a, 7, 8}, {&b, 0, 8}}, ps, num_pages, path);
  run_step(f, {{&a, 8, 21}, {&b, 8, 9}}, ps, num_pages, path);
  run_step(f, {{&a, 21, 22}}, ps, num_pages, path);
  run_step(f, {{&a, 22, 23}}, ps, num_pages, path);
}

TEST_P(CpuMla, CascadeSharedLevelMergesLatentStates) {
  const int ps = GetParam().page_size;
  const Path path = GetParam().path;
  Fixture f;
  f.wuk = f.randn(H * Dn * Dl);
  f.wuv = f.randn(H * Dv * Dl);
  int next = 0;
  const int shared = 2 * 16;  // whole pages for every page size
  Seq a = make_seq(f, shared + 11, ps, next);
  Seq b = make_seq(f, shared + 6, ps, next, &a, shared);
  Seq c = make_seq(f, 6, ps, next);
  const int num_pages = next + 1;
  run_step(f, {{&a, 0, shared}}, ps, num_pages, path);  // writes the shared pages
  // a and b read the shared prefix in one non-causal level; c has an empty entry there.
  const int sp = shared / ps;
  run_step(f, {{&a, shared, shared + 10, sp}, {&b, shared, shared + 5, sp}, {&c, 0, 6}}, ps,
           num_pages, path);
  run_step(f, {{&a, shared + 10, shared + 11, sp}, {&b, shared + 5, shared + 6, sp}}, ps, num_pages,
           path);
}

// The cost rule at DeepSeek-V2-Lite's shape (16 heads, Dl 512, Dr 64, Dn 128, Dv 128): decode rows
// stay absorbed, a whole prompt goes expanded from its first tokens, and a chunk after 1024
// cached tokens goes expanded between 256 and 512 rows (bench/cpu/bench_mla_forms.cc measured the
// same order on this machine's CPU).
TEST(CpuMlaForms, CostRuleAtDeepseekShape) {
  AttentionShape s{16, 1, 576, 0.07f, KVCacheShape{1, 256, 16, 1, 576}};
  s.kv.latent = true;
  s.latent_dim = 512;
  auto chunk = [&](int rows, int cached) {
    PagedKVBatch b;
    std::vector<int32_t> pages((rows + cached + 15) / 16);
    for (size_t i = 0; i < pages.size(); ++i) pages[i] = int32_t(i);
    b.add(rows, pages, rows + cached, 16);
    return cpu_mla_expanded_pays(b, 0, s, 128, 128);
  };
  EXPECT_FALSE(chunk(1, 4000));
  EXPECT_FALSE(chunk(1, 1));  // (a one-token prompt costs the same either way)
  EXPECT_TRUE(chunk(64, 0));
  EXPECT_TRUE(chunk(512, 0));
  EXPECT_FALSE(chunk(64, 1024));
  EXPECT_FALSE(chunk(256, 1024));
  EXPECT_TRUE(chunk(512, 1024));
}

// The shared rule (mla_form.h) at DeepSeek's shape: the projections' weight moves the chunk size
// above which a chunk after 1024 cached tokens goes expanded (159 rows at weight 1, the CUDA
// backend's; 298 at 2, the CPU's); the pair count of a non-causal entry is rows x keys (149).
TEST(CpuMlaForms, RuleWeighsProjections) {
  const MlaDims d{16, 576, 512, 64, 128, 128};
  auto pays = [&](int rows, int cached, int64_t weight, bool causal = true) {
    PagedKVBatch b;
    b.causal = causal;
    std::vector<int32_t> pages((rows + cached + 15) / 16);
    for (size_t i = 0; i < pages.size(); ++i) pages[i] = int32_t(i);
    b.add(rows, pages, rows + cached, 16);
    return mla_expanded_pays(b, 0, 16, d, MlaFormCosts{weight, 0});
  };
  EXPECT_FALSE(pays(158, 1024, 1));
  EXPECT_TRUE(pays(159, 1024, 1));
  EXPECT_FALSE(pays(297, 1024, 2));
  EXPECT_TRUE(pays(298, 1024, 2));
  EXPECT_FALSE(pays(148, 1024, 1, /*causal=*/false));
  EXPECT_TRUE(pays(149, 1024, 1, /*causal=*/false));
  EXPECT_FALSE(pays(1, 4000, 1));
  // A fixed cost keeps a short prompt absorbed where the heads are few (CUDA's costs at 16 and 128
  // heads: 512-token prompts, measured absorbed-faster at 16 heads, expanded-faster at 128).
  const MlaFormCosts cuda{2, int64_t(1) << 31};
  EXPECT_FALSE(mla_expanded_pays(512, 512, true, d, cuda));
  EXPECT_TRUE(mla_expanded_pays(2048, 2048, true, d, cuda));
  EXPECT_TRUE(mla_expanded_pays(512, 512, true, MlaDims{128, 576, 512, 64, 128, 128}, cuda));
}

std::vector<MlaCase> mla_cases() {
  std::vector<MlaCase> out;
  for (int ps : {1, 4, 16})
    for (Path p : {Path::AbsorbedOps, Path::Absorbed, Path::Expanded, Path::Auto})
      out.push_back({ps, p});
  return out;
}

std::string mla_case_name(const ::testing::TestParamInfo<MlaCase>& info) {
  const char* path[] = {"AbsorbedOps", "Absorbed", "Expanded", "Auto"};
  return "page" + std::to_string(info.param.page_size) + "_" + path[int(info.param.path)];
}

INSTANTIATE_TEST_SUITE_P(PagesAndForms, CpuMla, ::testing::ValuesIn(mla_cases()), mla_case_name);

void rope_ref(const float* x, double* out, const float* c, const float* s, bool interleaved) {
  for (int i = 0; i < Dr / 2; ++i) {
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + Dr / 2;
    out[a] = double(x[a]) * c[i] - double(x[b]) * s[i];
    out[b] = double(x[b]) * c[i] + double(x[a]) * s[i];
  }
}

TEST(CpuMlaPrologue, RopeAndLatentNormMatchDirectComputation) {
  Fixture f;
  const int T = 5, max_pos = 20;
  const std::vector<float> q = f.randn(T * H * (Dn + Dr)), kv_a = f.randn(T * D),
                           norm = f.randn(Dl), table = f.randn(max_pos * Dr);
  const std::vector<int32_t> pos = {0, 3, 7, 19, 2};
  Tensor positions = f.be->alloc({T}, DType::I32);
  f.be->copy_from_host(positions, pos.data());
  for (bool interleaved : {false, true}) {
    Tensor q_mla = f.upload(std::vector<float>(T * H * D, 5.0f), {T, H * D});
    Tensor latent = f.be->alloc({T, D}, DType::F32);
    f.be->mla_rope_norm(f.upload(q, {T, H * (Dn + Dr)}), f.upload(kv_a, {T, D}),
                        f.upload(norm, {Dl}), 1e-6f, positions, f.upload(table, {max_pos, Dr}),
                        interleaved, Dn, q_mla, latent);
    const std::vector<float> gq = f.be->to_host_f32(q_mla), gl = f.be->to_host_f32(latent);
    for (int t = 0; t < T; ++t) {
      const float* c = table.data() + pos[t] * Dr;
      double want[Dr];
      for (int h = 0; h < H; ++h) {
        rope_ref(q.data() + (t * H + h) * (Dn + Dr) + Dn, want, c, c + Dr / 2, interleaved);
        for (int l = 0; l < Dl; ++l) EXPECT_EQ(gq[(t * H + h) * D + l], 5.0f);  // untouched
        for (int r = 0; r < Dr; ++r) EXPECT_NEAR(gq[(t * H + h) * D + Dl + r], want[r], 1e-5);
      }
      double ss = 0;
      for (int l = 0; l < Dl; ++l) ss += double(kv_a[t * D + l]) * kv_a[t * D + l];
      const double inv = 1.0 / std::sqrt(ss / Dl + 1e-6);
      for (int l = 0; l < Dl; ++l)
        EXPECT_NEAR(gl[t * D + l], norm[l] * kv_a[t * D + l] * inv, 1e-5);
      rope_ref(kv_a.data() + t * D + Dl, want, c, c + Dr / 2, interleaved);
      for (int r = 0; r < Dr; ++r) EXPECT_NEAR(gl[t * D + Dl + r], want[r], 1e-5);
    }
  }
}

TEST(CpuMlaPrologue, PlanRefusesLatentDimOnPlainPages) {
  auto be = make_cpu_backend();
  AttentionStep step{1, {}};
  step.levels.emplace_back();
  step.levels[0].add(1, {0}, 1, 4);
  AttentionShape plain{H, 1, D, 1.0f, KVCacheShape{1, 2, 4, 1, D}};
  plain.latent_dim = Dl;  // latent_dim without latent pages
  try {
    be->plan_attention(step, plain);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("latent"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nc
