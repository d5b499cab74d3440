// Paged attention on the CUDA backend against the CPU backend: random CSR batches mixing prefill
// chunks and decodes, page sizes 1/16/64, both layouts, one level and several cascade levels,
// and each decode kernel. Also checks the appended K/V slots and plan/workspace reuse.
#include <algorithm>

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
};

class CudaAttention : public GpuVsCpu {
 protected:
  // Runs one step on both backends; checks output and every page (appended slots included).
  void check(const AttnCase& c, int batch, const char* label) {
    SCOPED_TRACE(label);
    CudaBackendOptions opt;
    opt.decode_kernel = c.kernel;
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
    // some keys, and the options pick it (Auto: GQA group sizes below 4).
    const std::vector<bool> uses = cuda_plan_uses_decode_kernel(*plan_g);
    ASSERT_EQ(uses.size(), pr.step.levels.size());
    for (size_t l = 0; l < uses.size(); ++l) {
      const PagedKVBatch& lv = pr.step.levels[l];
      bool single = true;
      for (int b = 0; b < lv.batch_size(); ++b)
        single = single && lv.q_len(b) == 1 && lv.num_pages(b) > 0;
      const bool want = single && (c.kernel == DecodeKernel::CudaCores ||
                                   (c.kernel == DecodeKernel::Auto && c.Hq / c.Hk < 4));
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
  for (int levels : {2, 3})
    for (int page_size : {1, 16, 64})
      for (KVLayout layout : {KVLayout::NHD, KVLayout::HND})
        for (bool decode_only : {false, true}) {
          const std::string label =
              std::to_string(levels) + " levels page " + std::to_string(page_size) +
              (layout == KVLayout::NHD ? " NHD" : " HND") + (decode_only ? " decode" : " mixed");
          check({16, 8, 128, page_size, layout, levels, decode_only, DecodeKernel::Auto}, 9,
                label.c_str());
          check({9, 3, 64, page_size, layout, levels, decode_only, DecodeKernel::Auto}, 6,
                label.c_str());
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

TEST_F(CudaAttention, RejectsBadPlans) {
  Problem pr = make_problem(rng, 16, 8, 128, 16, KVLayout::NHD, 3, 1, false);
  AttentionShape bad = pr.shape;
  bad.head_dim = bad.kv.head_dim = 96;
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
