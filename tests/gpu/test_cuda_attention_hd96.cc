// head_dim 96 (Phi-3) on the CUDA backend: our own paged attention kernel (attn_generic.h) on
// every level, against the CPU backend: decode and prefill levels, NHD and HND pages, page sizes
// 1..16, GQA groups 1/2/4, window and soft cap, a chunk whose first row starts mid-page, cascade
// steps with one and two shared levels (prefill rows and decode rows, with and without overlap).
// Graph replays at head_dim 96: test_cuda_attention_variants.cc (HeadDim96And256...).
#include <cmath>
#include <numeric>

#include "gpu_test_util.h"

namespace nc::testing {
namespace {

constexpr int kD = 96;

struct Hd96Variant {
  const char* name;
  int window_left;
  float soft_cap;
};

const Hd96Variant kHd96Variants[] = {
    {"plain", -1, 0.0f}, {"window", 29, 0.0f}, {"soft_cap", -1, 4.0f}, {"both", 45, 4.0f}};

AttentionShape hd96_shape(int Hq, int Hk, int ps, int num_pages, KVLayout layout,
                          const Hd96Variant& v) {
  AttentionShape s{Hq, Hk, kD, 1.0f / std::sqrt(float(kD)),
                   KVCacheShape{1, num_pages, ps, Hk, kD, layout}};
  s.window_left = v.window_left;
  s.logits_soft_cap = v.soft_cap;
  return s;
}

// Pages [next, next + ceil(len / ps)) for one entry.
std::vector<int32_t> take_pages(int len, int ps, int* next) {
  std::vector<int32_t> pages((len + ps - 1) / ps);
  std::iota(pages.begin(), pages.end(), *next);
  *next += int(pages.size());
  return pages;
}

class CudaHd96 : public GpuVsCpu {
 protected:
  // Runs `step` on the GPU and `ref` (the same attention as one plain level, or `step` itself) on
  // the CPU with the same random pages, q, k, v; checks every level ran our kernel and returns
  // the output's relative error. Without `ref`, the page pools must agree after the append.
  double run_both(Backend& g, const AttentionStep& step, const AttentionShape& shape,
                  const AttentionStep* ref = nullptr) {
    const int T = step.num_tokens, Hq = shape.num_qo_heads, Hk = shape.num_kv_heads;
    const KVCacheShape& kv = shape.kv;
    HostTensor pages{{kv.num_pages, 2, kv.page_size, Hk, kD},
                     random_vec(rng, size_t(kv.num_pages) * kv.elems_per_page())};
    HostTensor q{{T, Hq * kD}, random_vec(rng, size_t(T) * Hq * kD, 3.0f)};
    HostTensor k{{T, Hk * kD}, random_vec(rng, size_t(T) * Hk * kD)};
    HostTensor v{{T, Hk * kD}, random_vec(rng, size_t(T) * Hk * kD)};
    HostTensor nan{{T, Hq * kD}, std::vector<float>(size_t(T) * Hq * kD, std::nanf(""))};
    Tensor pc = cpu->upload(pages), pg = g.upload(pages);
    Tensor oc = cpu->upload(nan), og = g.upload(nan);
    cpu->attention(*cpu->plan_attention(ref ? *ref : step, shape), cpu->upload(q), cpu->upload(k),
                   cpu->upload(v), pc, oc);
    const std::unique_ptr<AttentionPlan> plan = g.plan_attention(step, shape);
    for (bool generic : cuda_plan_uses_generic_kernel(*plan)) EXPECT_TRUE(generic);
    g.attention(*plan, g.upload(q), g.upload(k), g.upload(v), pg, og);
    if (ref == nullptr) {
      EXPECT_EQ(g.to_host_f32(pg), cpu->to_host_f32(pc));
    }
    return rel_error(g.to_host_f32(og), cpu->to_host_f32(oc));
  }
};

// One level of 3 entries: decode rows over 1..300 tokens, or prefill chunks of 1..40 rows after
// 0..120 earlier tokens (so chunks start anywhere in a page).
AttentionStep one_level(std::mt19937& rng, int ps, bool decode, int* num_pages) {
  std::uniform_int_distribution<int> q_dist(1, 40), ctx_dist(0, 120), dec_len(1, 300);
  AttentionStep step;
  PagedKVBatch own;
  int next = 0;
  for (int b = 0; b < 3; ++b) {
    const int q_len = decode ? 1 : q_dist(rng);
    const int len = decode ? dec_len(rng) : q_len + ctx_dist(rng);
    own.add(q_len, take_pages(len, ps, &next), len, ps);
    step.num_tokens += q_len;
  }
  step.levels = {own};
  *num_pages = next + 1;
  return step;
}

TEST_F(CudaHd96, DecodeAndPrefillLevels) {
  for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
    for (int ps : {1, 5, 16})
      for (auto [Hq, Hk] : {std::pair{4, 4}, std::pair{4, 2}, std::pair{8, 2}})
        for (const Hd96Variant& v : kHd96Variants)
          for (bool decode : {true, false}) {
            SCOPED_TRACE(::testing::Message()
                         << (layout == KVLayout::HND ? "HND" : "NHD") << " ps " << ps << " Hq "
                         << Hq << " Hk " << Hk << " " << v.name << (decode ? " decode" : ""));
            int num_pages = 0;
            const AttentionStep step = one_level(rng, ps, decode, &num_pages);
            EXPECT_LE(run_both(*gpu, step, hd96_shape(Hq, Hk, ps, num_pages, layout, v)), kBf16Tol);
          }
}

// A second prefill chunk of 20 rows after 37 tokens (page size 16): its first row sits mid-page
// and its rows cross a page boundary; a window and a soft cap on top.
TEST_F(CudaHd96, ChunkStartingMidPage) {
  const int ps = 16;
  for (const Hd96Variant& v : kHd96Variants) {
    SCOPED_TRACE(v.name);
    AttentionStep step;
    PagedKVBatch own;
    int next = 0;
    own.add(20, take_pages(57, ps, &next), 57, ps);
    step.num_tokens = 20;
    step.levels = {own};
    EXPECT_LE(run_both(*gpu, step, hd96_shape(8, 4, ps, next, KVLayout::NHD, v)), kBf16Tol);
  }
}

// Cascade steps over `shared` levels (1 or 2) of whole pages shared by every entry, then each
// entry's own tokens (causal). `rows` per entry: 1 (decode) or several (a prefill chunk). `ref`
// gets the same attention as one plain level.
AttentionStep cascade_step(int shared, int batch, int rows, int ps, AttentionStep* ref,
                           int* num_pages) {
  const int level_pages[2] = {3, 2}, own_tokens = 23;
  AttentionStep step;
  step.num_tokens = ref->num_tokens = batch * rows;
  int next = 0;
  std::vector<int32_t> prefix;
  for (int l = 0; l < shared; ++l) {
    PagedKVBatch level;
    level.causal = false;
    const std::vector<int32_t> pages = take_pages(level_pages[l] * ps, ps, &next);
    level.add(batch * rows, pages, level_pages[l] * ps, ps);
    prefix.insert(prefix.end(), pages.begin(), pages.end());
    step.levels.push_back(level);
  }
  PagedKVBatch own, plain;
  for (int b = 0; b < batch; ++b) {
    const std::vector<int32_t> mine = take_pages(own_tokens, ps, &next);
    own.add(rows, mine, own_tokens, ps);
    std::vector<int32_t> all = prefix;
    all.insert(all.end(), mine.begin(), mine.end());
    plain.add(rows, all, int(prefix.size()) * ps + own_tokens, ps);
  }
  step.levels.push_back(own);
  ref->levels = {plain};
  *num_pages = next;
  return step;
}

TEST_F(CudaHd96, CascadeSteps) {
  const int ps = 8;
  for (bool overlap : {false, true})
    for (int shared : {1, 2})
      for (int rows : {1, 5})
        for (const Hd96Variant& v : kHd96Variants) {
          SCOPED_TRACE(::testing::Message() << v.name << " shared " << shared << " rows " << rows
                                            << " overlap " << overlap);
          CudaBackendOptions opt;
          opt.overlap_cascade_levels = overlap;
          std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
          AttentionStep ref;
          int num_pages = 0;
          const AttentionStep step = cascade_step(shared, 3, rows, ps, &ref, &num_pages);
          AttentionShape sh = hd96_shape(8, 2, ps, num_pages, KVLayout::HND, v);
          // The window must cover the shared prefix from every row (window_view guarantees it).
          if (sh.window_left >= 0) sh.window_left = 5 * ps + 23;
          EXPECT_LE(run_both(*g, step, sh, &ref), kBf16Tol);
        }
}

}  // namespace
}  // namespace nc::testing
