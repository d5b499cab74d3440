// Paged attention on the CUDA backend against the CPU backend: random CSR batches mixing prefill
// chunks and decodes, page sizes 1/16/64, both layouts, one level and several cascade levels,
// and each decode kernel. Also checks the appended K/V slots and plan/workspace reuse, and cascade
// decode steps through CUDA graphs (plan_attention_graph) against the eager plans.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cuda/decode_choice.h"
#include "gpu_test_util.h"

namespace nc::testing {
namespace {

struct Req {
  int group = -1;   // shared group at level 1 (-1: none)
  int q_len = 1;    // new tokens
  int own_len = 1;  // tokens in its own pages, including the new ones
  std::vector<int32_t> own_pages;
};

struct Problem {
  AttentionShape shape;
  AttentionStep step;
  int T = 0;
};

// Builds a step over random requests. levels: 1 (own pages only), 2 (a prefix shared by all +
// own), or 3 (shared by all + per group + own; requests outside any group get an empty entry).
// Requests are ordered by group, so the rows of a group are contiguous.
Problem make_problem(std::mt19937& rng, int Hq, int Hk, int D, int page_size, KVLayout layout,
                     int batch, int levels, bool decode_only) {
  std::uniform_int_distribution<int> q_dist(1, 40), ctx_dist(0, 300), coin(0, 2), group_dist(-1, 2);
  std::vector<Req> reqs(batch);
  for (Req& r : reqs) {
    r.q_len = (decode_only || coin(rng) != 0) ? 1 : q_dist(rng);
    r.own_len = r.q_len + ctx_dist(rng);
    r.group = levels == 3 ? group_dist(rng) : -1;
  }
  std::stable_sort(reqs.begin(), reqs.end(),
                   [](const Req& a, const Req& b) { return a.group < b.group; });
  int next_page = 0;
  std::vector<int32_t> all_pages;
  auto take = [&](int tokens) {
    std::vector<int32_t> p;
    for (int i = 0; i < (tokens + page_size - 1) / page_size; ++i) p.push_back(next_page++);
    return p;
  };
  const int shared0_len = levels >= 2 ? page_size * (1 + ctx_dist(rng) / page_size / 2) : 0;
  std::vector<int32_t> shared0 = take(shared0_len);
  std::vector<std::vector<int32_t>> group_pages(3);
  std::vector<int> group_len(3);
  for (int g = 0; g < 3; ++g) {
    group_len[g] = page_size * (1 + coin(rng) + ctx_dist(rng) / page_size / 4);
    group_pages[g] = take(group_len[g]);
  }
  for (Req& r : reqs) r.own_pages = take(r.own_len);
  // Scatter physical pages over the pool.
  std::vector<int32_t> perm(next_page);
  for (int i = 0; i < next_page; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  auto remap = [&](std::vector<int32_t>& v) {
    for (int32_t& p : v) p = perm[p];
  };
  remap(shared0);
  for (auto& g : group_pages) remap(g);
  for (Req& r : reqs) remap(r.own_pages);

  Problem pr;
  pr.shape = AttentionShape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                            KVCacheShape{1, next_page + 3, page_size, Hk, D, layout}};
  for (const Req& r : reqs) pr.T += r.q_len;
  pr.step.num_tokens = pr.T;
  if (levels >= 2) {
    PagedKVBatch l0;
    l0.causal = false;
    l0.add(pr.T, shared0, shared0_len, page_size);
    pr.step.levels.push_back(l0);
  }
  if (levels == 3) {
    PagedKVBatch l1;
    l1.causal = false;
    for (size_t i = 0; i < reqs.size();) {
      size_t j = i;
      int rows = 0;
      while (j < reqs.size() && reqs[j].group == reqs[i].group) rows += reqs[j++].q_len;
      if (reqs[i].group < 0) {
        for (size_t x = i; x < j; ++x) l1.add(reqs[x].q_len, {}, 0, page_size);  // empty entries
      } else {
        l1.add(rows, group_pages[reqs[i].group], group_len[reqs[i].group], page_size);
      }
      i = j;
    }
    pr.step.levels.push_back(l1);
  }
  PagedKVBatch own;
  for (const Req& r : reqs) own.add(r.q_len, r.own_pages, r.own_len, page_size);
  pr.step.levels.push_back(own);
  return pr;
}

struct AttnCase {
  int Hq, Hk, D, page_size;
  KVLayout layout;
  int levels;
  bool decode_only;
  DecodeKernel kernel;
  bool overlap = false;  // CudaBackendOptions::overlap_cascade_levels
};

class CudaAttention : public GpuVsCpu {
 protected:
  // Runs one step on both backends; checks output and every page (appended slots included).
  void check(const AttnCase& c, int batch, const char* label) {
    SCOPED_TRACE(label);
    CudaBackendOptions opt;
    opt.decode_kernel = c.kernel;
    opt.overlap_cascade_levels = c.overlap;
    std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
    Problem pr =
        make_problem(rng, c.Hq, c.Hk, c.D, c.page_size, c.layout, batch, c.levels, c.decode_only);
    const KVCacheShape& kv = pr.shape.kv;
    const Shape page_shape =
        kv.layout == KVLayout::NHD
            ? Shape{kv.num_pages, 2, kv.page_size, kv.num_kv_heads, kv.head_dim}
            : Shape{kv.num_pages, 2, kv.num_kv_heads, kv.page_size, kv.head_dim};
    HostTensor pages{page_shape, random_vec(rng, size_t(kv.num_pages) * kv.elems_per_page())};
    Tensor pc = cpu->upload(pages), pg = g->upload(pages);
    HostTensor q{{pr.T, c.Hq * c.D}, random_vec(rng, size_t(pr.T) * c.Hq * c.D)};
    HostTensor k{{pr.T, c.Hk * c.D}, random_vec(rng, size_t(pr.T) * c.Hk * c.D)};
    HostTensor v{{pr.T, c.Hk * c.D}, random_vec(rng, size_t(pr.T) * c.Hk * c.D)};
    HostTensor poison{{pr.T, c.Hq * c.D},
                      std::vector<float>(size_t(pr.T) * c.Hq * c.D, std::nanf(""))};
    Tensor oc = cpu->upload(poison), og = g->upload(poison);

    auto plan_c = cpu->plan_attention(pr.step, pr.shape);
    auto plan_g = g->plan_attention(pr.step, pr.shape);
    // The CUDA-core decode kernel runs a level exactly when every entry has one query row and
    // some keys, and the options pick it (Auto: decode_choice.h's table).
    const std::vector<bool> uses = cuda_plan_uses_decode_kernel(*plan_g);
    ASSERT_EQ(uses.size(), pr.step.levels.size());
    for (size_t l = 0; l < uses.size(); ++l) {
      const PagedKVBatch& lv = pr.step.levels[l];
      bool single = true;
      int64_t keys = 0;
      for (int b = 0; b < lv.batch_size(); ++b) {
        single = single && lv.q_len(b) == 1 && lv.num_pages(b) > 0;
        keys += lv.kv_len(b, c.page_size);
      }
      const int entries = std::max(1, lv.batch_size());
      const bool auto_cc =
          cuda_host::auto_decode_kernel(c.Hq / c.Hk, c.D, entries, int(keys / entries)) ==
          DecodeKernel::CudaCores;
      const bool want = single && (c.kernel == DecodeKernel::CudaCores ||
                                   (c.kernel == DecodeKernel::Auto && auto_cc));
      EXPECT_EQ(uses[l], want) << "level " << l;
    }
    cpu->attention(*plan_c, cpu->upload(q), cpu->upload(k), cpu->upload(v), pc, oc);
    g->attention(*plan_g, g->upload(q), g->upload(k), g->upload(v), pg, og);
    const std::vector<float> out = g->to_host_f32(og), ref = cpu->to_host_f32(oc);
    EXPECT_LE(rel_error(out, ref), kBf16Tol) << "T=" << pr.T;
    // Appended K/V are bf16 inputs copied into slots: the pools must agree exactly.
    EXPECT_EQ(g->to_host_f32(pg), cpu->to_host_f32(pc));
  }
};

TEST_F(CudaAttention, OneLevelMixedBatches) {
  for (int page_size : {1, 16, 64})
    for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
      for (auto [Hq, Hk, D] :
           {std::tuple{16, 8, 128}, std::tuple{9, 3, 64}, std::tuple{8, 1, 64}}) {
        const std::string label =
            "page " + std::to_string(page_size) + (layout == KVLayout::NHD ? " NHD " : " HND ") +
            std::to_string(Hq) + "/" + std::to_string(Hk) + "/" + std::to_string(D);
        check({Hq, Hk, D, page_size, layout, 1, false, DecodeKernel::Auto}, 7, label.c_str());
      }
}

TEST_F(CudaAttention, DecodeKernels) {
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores})
    for (int page_size : {1, 16, 64})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
        for (auto [Hq, Hk, D] :
             {std::tuple{16, 8, 128}, std::tuple{9, 3, 64}, std::tuple{32, 4, 128}}) {
          const std::string label =
              std::string(kernel == DecodeKernel::CudaCores ? "cuda cores" : "tensor cores") +
              " page " + std::to_string(page_size) + (layout == KVLayout::NHD ? " NHD " : " HND ") +
              std::to_string(Hq) + "/" + std::to_string(Hk) + "/" + std::to_string(D);
          check({Hq, Hk, D, page_size, layout, 1, true, kernel}, 33, label.c_str());
        }
}

TEST_F(CudaAttention, LargeDecodeBatchSplitsKv) {
  // Few long sequences: FlashInfer splits the KV and merges partial states.
  for (DecodeKernel kernel : {DecodeKernel::CudaCores, DecodeKernel::TensorCores}) {
    check({16, 8, 128, 16, KVLayout::NHD, 1, true, kernel}, 2, "split decode");
  }
  check({16, 8, 128, 16, KVLayout::NHD, 1, false, DecodeKernel::Auto}, 2, "split prefill");
}

TEST_F(CudaAttention, CascadeLevels) {
  // Shared levels in sequence on one stream, and overlapped on a second stream (merged there
  // first when there are two) while the own level runs.
  for (bool overlap : {false, true})
    for (int levels : {2, 3})
      for (int page_size : {1, 16, 64})
        for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
          for (bool decode_only : {false, true}) {
            const std::string label =
                std::to_string(levels) + " levels page " + std::to_string(page_size) +
                (layout == KVLayout::NHD ? " NHD" : " HND") + (decode_only ? " decode" : " mixed") +
                (overlap ? " overlap" : " one stream");
            check({16, 8, 128, page_size, layout, levels, decode_only, DecodeKernel::Auto, overlap},
                  9, label.c_str());
            check({9, 3, 64, page_size, layout, levels, decode_only, DecodeKernel::Auto, overlap},
                  6, label.c_str());
          }
}

TEST_F(CudaAttention, OverlappedCascadeOverLongSharedPrefix) {
  // Many decode rows over a long shared prefix (the shared level splits its KV and uses the side
  // stream's scratch while the own level's split-kv uses the main one's), then the same backend
  // and plan again: the second run must give the same output.
  for (auto [Hq, Hk] : {std::pair{32, 32}, std::pair{32, 8}}) {
    SCOPED_TRACE(::testing::Message() << Hq << "/" << Hk);
    const int D = 128, ps = 16, batch = 24, prefix_pages = 96, own_tokens = 40;
    const SharedPrefixDecode d =
        shared_prefix_decode(rng, Hq, Hk, D, ps, batch, prefix_pages, own_tokens);
    const std::vector<float> ref = cpu_plain_attention(d);
    CudaBackendOptions opt;
    opt.overlap_cascade_levels = true;
    std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
    Tensor pg = g->upload(d.pages), og = g->alloc({batch, Hq * D}, DType::BF16);
    Tensor qg = g->upload(d.q), kg = g->upload(d.k), vg = g->upload(d.v);
    auto plan = g->plan_attention(d.casc, d.shape);
    g->attention(*plan, qg, kg, vg, pg, og);
    const std::vector<float> first = g->to_host_f32(og);
    EXPECT_LE(rel_error(first, ref), kBf16Tol);
    g->attention(*plan, qg, kg, vg, pg, og);
    EXPECT_EQ(g->to_host_f32(og), first);
  }
}

TEST_F(CudaAttention, PlansOutliveEachOtherAndReuseStaging) {
  // Several plans alive at once, some destroyed before others run: each must keep its own
  // metadata (a reused pinned buffer is only rewritten after its copy has run).
  std::vector<Problem> probs;
  for (int i = 0; i < 4; ++i)
    probs.push_back(make_problem(rng, 16, 8, 128, 16, KVLayout::NHD, 5 + i, 1 + i % 3, false));
  std::vector<std::unique_ptr<AttentionPlan>> plans;
  for (const Problem& p : probs) plans.push_back(gpu->plan_attention(p.step, p.shape));
  plans[1].reset();
  plans[1] = gpu->plan_attention(probs[1].step, probs[1].shape);
  for (size_t i = 0; i < probs.size(); ++i) {
    const Problem& pr = probs[i];
    const KVCacheShape& kv = pr.shape.kv;
    HostTensor pages{{kv.num_pages, 2, kv.page_size, kv.num_kv_heads, kv.head_dim},
                     random_vec(rng, size_t(kv.num_pages) * kv.elems_per_page())};
    HostTensor q{{pr.T, 16 * 128}, random_vec(rng, size_t(pr.T) * 16 * 128)};
    HostTensor k{{pr.T, 8 * 128}, random_vec(rng, size_t(pr.T) * 8 * 128)};
    Tensor pc = cpu->upload(pages), pg = gpu->upload(pages);
    Tensor oc = cpu->alloc({pr.T, 16 * 128}, DType::F32),
           og = gpu->alloc({pr.T, 16 * 128}, DType::BF16);
    auto plan_c = cpu->plan_attention(pr.step, pr.shape);
    // Two "layers" over one plan.
    for (int layer = 0; layer < 2; ++layer) {
      cpu->attention(*plan_c, cpu->upload(q), cpu->upload(k), cpu->upload(k), pc, oc);
      gpu->attention(*plans[i], gpu->upload(q), gpu->upload(k), gpu->upload(k), pg, og);
      EXPECT_LE(rel_error(gpu->to_host_f32(og), cpu->to_host_f32(oc)), kBf16Tol)
          << i << "/" << layer;
    }
  }
}

// A decode step of B rows over a cascade of `levels` levels: each shared level splits the rows
// into runs that either share a prefix (one entry spanning the run's rows; its last page may be
// partial) or have nothing at that level (an empty entry per row); then each row's own pages.
// shape 0: random runs; 1: one run spanning all rows over a long prefix; 2: all rows empty but
// the last two. Own pages are distinct pages of [0, 3 B) (the step's K/V is appended there);
// shared pages are any of [3 B, num_pages) (only read).
AttentionStep random_cascade_decode(std::mt19937& rng, int B, int levels, int page_size,
                                    int num_pages, int max_prefix_pages, int shape) {
  std::vector<int32_t> own_pages(size_t(3 * B));
  std::iota(own_pages.begin(), own_pages.end(), 0);
  std::shuffle(own_pages.begin(), own_pages.end(), rng);
  std::uniform_int_distribution<int32_t> shared_page(3 * B, num_pages - 1);
  auto take = [&](int n) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int32_t& x : p) x = shared_page(rng);
    return p;
  };
  std::uniform_int_distribution<int> run_len(1, std::max(1, B / 2)), coin(0, 2),
      prefix(1, max_prefix_pages), last(1, page_size), own_len(1, 3 * page_size);
  auto add_prefix = [&](PagedKVBatch& lv, int rows, int pages) {
    lv.add(rows, take(pages), (pages - 1) * page_size + last(rng), page_size);
  };
  AttentionStep step;
  step.num_tokens = B;
  for (int l = 0; l + 1 < levels; ++l) {
    PagedKVBatch lv;
    lv.causal = false;
    if (shape == 1) {
      add_prefix(lv, B, max_prefix_pages);
    } else {
      for (int r = 0; r < B;) {
        const int n = shape == 2 ? (r + 2 >= B ? B - r : 1) : std::min(B - r, run_len(rng));
        const bool empty = shape == 2 ? r + 2 < B : coin(rng) == 0;
        if (empty) {
          for (int i = 0; i < n; ++i) lv.add(1, {}, 0, page_size);
        } else {
          add_prefix(lv, n, prefix(rng));
        }
        r += n;
      }
    }
    step.levels.push_back(lv);
  }
  PagedKVBatch own;
  for (int b = 0; b < B; ++b) {
    const int len = own_len(rng);
    const auto first = own_pages.begin() + std::ptrdiff_t(3 * b);
    own.add(1, std::vector<int32_t>(first, first + (len + page_size - 1) / page_size), len,
            page_size);
  }
  step.levels.push_back(own);
  return step;
}

void upload_bf16(Backend& b, Tensor t, const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  b.copy_from_host(t, h.data());
}

// Cascade decode steps (2 and 3 levels) planned into graph slots, captured once per slot, then
// replayed after re-planning the slot with other structures (other run lengths and prefix
// lengths, empty entries, a single entry over all rows): each replay equals the eager
// plan_attention + attention of the same step (and the CPU backend), and appends the same K/V.
TEST_F(CudaAttention, CascadeGraphReplansMatchEager) {
  const int B = 16, max_pages = 64;
  for (bool overlap : {false, true})
    for (auto [Hq, Hk, D] : {std::tuple{16, 8, 128}, std::tuple{9, 3, 64}})
      for (auto [ps, layout, max_prefix] :
           {std::tuple{16, KVLayout::NHD, 40}, std::tuple{1, KVLayout::HND, 60}}) {
        SCOPED_TRACE(::testing::Message() << "overlap " << overlap << " " << Hq << "/" << Hk << "/"
                                          << D << " page " << ps);
        CudaBackendOptions opt;
        opt.overlap_cascade_levels = overlap;
        std::unique_ptr<Backend> g = make_cuda_backend(0, opt);
        const int num_pages = 3 * B + 160;
        const AttentionShape shape{Hq, Hk, D, 1.0f / std::sqrt(float(D)),
                                   KVCacheShape{1, num_pages, ps, Hk, D, layout}};
        const Shape page_shape = layout == KVLayout::NHD ? Shape{num_pages, 2, ps, Hk, D}
                                                         : Shape{num_pages, 2, Hk, ps, D};
        HostTensor pages{page_shape,
                         random_vec(rng, size_t(num_pages) * shape.kv.elems_per_page())};
        Tensor pool_graph = g->upload(pages), pool_eager = g->upload(pages);
        Tensor pc = cpu->upload(pages);
        Tensor qg = g->alloc({B, Hq * D}, DType::BF16), kg = g->alloc({B, Hk * D}, DType::BF16),
               vg = g->alloc({B, Hk * D}, DType::BF16), og = g->alloc({B, Hq * D}, DType::BF16),
               oe = g->alloc({B, Hq * D}, DType::BF16);
        const std::vector<float> nan(size_t(B) * Hq * D, std::nanf(""));
        for (int levels : {2, 3}) {
          const int slot = levels;  // one slot, and one graph, per level count
          for (int round = 0; round < 5; ++round) {
            SCOPED_TRACE(::testing::Message() << levels << " levels, round " << round);
            const AttentionStep step =
                random_cascade_decode(rng, B, levels, ps, num_pages, max_prefix, round % 3);
            const std::vector<float> q = random_vec(rng, size_t(B) * Hq * D),
                                     k = random_vec(rng, size_t(B) * Hk * D),
                                     v = random_vec(rng, size_t(B) * Hk * D);
            upload_bf16(*g, qg, q);
            upload_bf16(*g, kg, k);
            upload_bf16(*g, vg, v);
            upload_bf16(*g, og, nan);
            upload_bf16(*g, oe, nan);
            std::unique_ptr<AttentionPlan> plan =
                g->plan_attention_graph(step, shape, slot, max_pages);
            ASSERT_NE(plan, nullptr);
            if (round == 0) {
              // As the decoder does: the step eagerly, then recorded (capture does not run it).
              g->attention(*plan, qg, kg, vg, pool_graph, og);
              upload_bf16(*g, og, nan);
              g->begin_capture();
              g->attention(*plan, qg, kg, vg, pool_graph, og);
              g->end_capture(slot);
            }
            ASSERT_TRUE(g->has_graph(slot));
            g->replay(slot);
            g->attention(*g->plan_attention(step, shape), qg, kg, vg, pool_eager, oe);
            Tensor oc = cpu->alloc({B, Hq * D}, DType::F32);
            cpu->attention(*cpu->plan_attention(step, shape), cpu->upload({{B, Hq * D}, q}),
                           cpu->upload({{B, Hk * D}, k}), cpu->upload({{B, Hk * D}, v}), pc, oc);
            const std::vector<float> out = g->to_host_f32(og);
            EXPECT_LE(rel_error(out, g->to_host_f32(oe)), kBf16Tol);
            EXPECT_LE(rel_error(out, cpu->to_host_f32(oc)), kBf16Tol);
            EXPECT_EQ(g->to_host_f32(pool_graph), g->to_host_f32(pool_eager));
          }
        }
      }
}

// Steps the graph path declines (they run eagerly): a causal shared level, a shared level with
// more entries than the step has rows.
TEST_F(CudaAttention, CascadeGraphDeclinesUnplannableSteps) {
  const int B = 4, ps = 16;
  const AttentionShape shape{16, 8, 128, 1.0f / std::sqrt(128.0f),
                             KVCacheShape{1, 64, ps, 8, 128, KVLayout::NHD}};
  const AttentionStep good = random_cascade_decode(rng, B, 2, ps, 64, 4, 2);
  EXPECT_NE(gpu->plan_attention_graph(good, shape, 0, 16), nullptr);
  AttentionStep causal = good;
  causal.levels[0].causal = true;
  EXPECT_EQ(gpu->plan_attention_graph(causal, shape, 0, 16), nullptr);
  AttentionStep wide = good;  // 3 entries + 2 of no rows
  for (int i = 0; i < 2; ++i) wide.levels[0].add(0, {}, 0, ps);
  EXPECT_EQ(gpu->plan_attention_graph(wide, shape, 0, 16), nullptr);
}

TEST_F(CudaAttention, RejectsBadPlans) {
  Problem pr = make_problem(rng, 16, 8, 128, 16, KVLayout::NHD, 3, 1, false);
  AttentionShape bad = pr.shape;
  bad.head_dim = bad.kv.head_dim = 80;  // no kernel serves it
  EXPECT_THROW(gpu->plan_attention(pr.step, bad), Error);
  bad = pr.shape;
  bad.num_qo_heads = 12;
  EXPECT_THROW(gpu->plan_attention(pr.step, bad), Error);
  AttentionStep step = pr.step;
  step.levels.back().kv_indices[0] = pr.shape.kv.num_pages;  // page out of range
  EXPECT_THROW(gpu->plan_attention(step, pr.shape), Error);
  step = pr.step;
  step.num_tokens += 1;
  EXPECT_THROW(gpu->plan_attention(step, pr.shape), Error);
}

}  // namespace
}  // namespace nc::testing
