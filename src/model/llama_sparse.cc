// LlamaModel's sparse decode attention (Quest; model/llama.h SparseOptions, docs/long_context.md):
// the options, the bounds tensors of the KV cache, and a pass's sparse state (budgets checked,
// the pages it appends into, the sparse plans, the counts of pages read and skipped).
#include <algorithm>

#include "core/error.h"
#include "core/fp8.h"
#include "kv/page_bounds.h"
#include "model/llama.h"

namespace nc {

void LlamaModel::set_sparse_options(const SparseOptions& o) {
  if (o.enabled) {
    NC_CHECK_AS(ErrorKind::Unsupported, !cfg_.mla.enabled(),
                "sparse attention: MLA models (latent KV pages) have no per-head key bounds");
    NC_CHECK_AS(ErrorKind::Unsupported, cfg_.num_layers > o.dense_layers,
                "sparse attention: the model has {} layers, not more than the {} dense layers "
                "(--sparse-dense-layers): no layer would be read sparsely",
                cfg_.num_layers, o.dense_layers);
    NC_CHECK_AS(ErrorKind::InvalidArgument,
                o.sink_pages >= 0 && o.window >= 0 && o.dense_layers >= 0,
                "sparse attention: sink pages {}, window {}, dense layers {} (each needs >= 0)",
                o.sink_pages, o.window, o.dense_layers);
    bool any = false;
    for (int64_t l = 0; l < cfg_.num_layers; ++l)
      any = any || (l >= o.dense_layers &&
                    kinds_.kinds[size_t(kinds_.of_layer[size_t(l)])].window_left < 0);
    NC_CHECK_AS(ErrorKind::Unsupported, any,
                "sparse attention: every layer past the {} dense ones is a sliding-window layer",
                o.dense_layers);
  }
  sparse_ = o;
}

bool LlamaModel::layer_is_sparse(int64_t l) const {
  return sparse_.enabled && l >= sparse_.dense_layers && l < cfg_.num_layers &&
         kinds_.kinds[size_t(kinds_.of_layer[size_t(l)])].window_left < 0;
}

int64_t LlamaModel::bounds_bytes_per_page() const {
  int64_t n = 0;
  for (int64_t l = 0; l < cfg_.num_layers; ++l) n += layer_is_sparse(l);
  return n * 2 * cfg_.num_kv_heads * cfg_.head_dim * int64_t(sizeof(float));
}

void LlamaModel::make_bounds(KVCache& kv) const {
  kv.bounds.clear();
  if (!sparse_.enabled) return;
  kv.bounds.resize(size_t(cfg_.num_layers));
  for (int64_t l = 0; l < cfg_.num_layers; ++l)
    if (layer_is_sparse(l))
      kv.bounds[size_t(l)] =
          backend_.alloc({kv.shape.num_pages, 2, cfg_.num_kv_heads, cfg_.head_dim}, DType::F32);
}

namespace {

// (page id, valid slots) of each page the own level's entries append into: the pages holding
// each entry's last q_len positions.
std::vector<int32_t> appended_pages(const PagedKVBatch& own, int ps) {
  std::vector<int32_t> out;
  for (int b = 0; b < own.batch_size(); ++b) {
    const int kv_len = own.kv_len(b, ps), first = kv_len - own.q_len(b);
    if (own.q_len(b) <= 0 || kv_len <= 0) continue;
    for (int i = first / ps; i <= (kv_len - 1) / ps; ++i) {
      out.push_back(own.kv_indices[size_t(own.kv_indptr[b] + i)]);
      out.push_back(std::min(ps, kv_len - i * ps));
    }
  }
  return out;
}

}  // namespace

PageSelection LlamaModel::page_selection(const ForwardInput& in) const {
  PageSelection sel;
  sel.sink_pages = sparse_.sink_pages;
  sel.window_tokens = sparse_.window;
  sel.entry_budgets = in.sparse_budgets;
  sel.per_head = sparse_.per_head;
  return sel;
}

void LlamaModel::prepare_sparse(const ForwardInput& in, const KVCache& kv) {
  sparse_step_ = SparseStep{};
  NC_CHECK_AS(ErrorKind::InvalidArgument, in.sparse_budgets.empty() || sparse_.enabled,
              "forward: sparse budgets given but sparse attention is off");
  if (!sparse_.enabled) return;
  NC_CHECK(kv.bounds.size() == kv.layers.size(),
           "forward: sparse attention is on but the kv cache has {} bounds tensors for {} layers "
           "(make the cache after set_sparse_options)",
           kv.bounds.size(), kv.layers.size());
  const PagedKVBatch& own = in.attention.levels.back();
  const int ps = kv.shape.page_size;
  NC_CHECK(in.sparse_budgets.empty() || in.sparse_budgets.size() == size_t(own.batch_size()),
           "forward: {} sparse budgets for {} own-level entries", in.sparse_budgets.size(),
           own.batch_size());
  const int64_t floor = int64_t(sparse_.sink_pages) * ps + sparse_.window;
  for (int32_t b : in.sparse_budgets)
    NC_CHECK_AS(ErrorKind::InvalidArgument, b == 0 || (b > 0 && b >= floor),
                "forward: sparse budget {} below the sinks + window ({} pages of {} + {} tokens "
                "= {}; 0: dense)",
                b, sparse_.sink_pages, ps, sparse_.window, floor);
  const PageSelection sel = page_selection(in);
  int64_t read = 0, skipped = 0;
  for (int b = 0; b < int(in.sparse_budgets.size()); ++b) {
    if (!entry_is_sparse(own, b, sel, ps)) continue;
    sparse_step_.any_sparse = true;
    const int n = own.num_pages(b);
    const int kept =
        selected_page_count(n, own.kv_last_page_len[size_t(b)], ps, sel.budget(b), sel);
    read += kept;
    skipped += n - kept;
  }
  int64_t sparse_layers = 0;
  for (int64_t l = 0; l < cfg_.num_layers; ++l) sparse_layers += layer_is_sparse(l);
  sparse_counts_.pages_read += read * sparse_layers;
  sparse_counts_.pages_skipped += skipped * sparse_layers;
  const std::vector<int32_t> slots = appended_pages(own, ps);
  const int64_t P = int64_t(slots.size() / 2);
  if (P == 0) return;
  if (!slots_buf_.defined() || slots_buf_.dim(0) < P)
    slots_buf_ = backend_.alloc({std::max<int64_t>(P, 64), 2}, DType::I32);
  sparse_step_.page_slots = slots_buf_.slice(0, P);
  backend_.copy_from_host(sparse_step_.page_slots, slots.data());
}

void LlamaModel::plan_sparse(const ForwardInput& in, const std::vector<AttentionStep>& steps,
                             const KVCache& kv) {
  if (!sparse_step_.any_sparse) return;
  const PageSelection sel = page_selection(in);
  sparse_step_.plans.resize(steps.size());
  for (size_t k = 0; k < steps.size(); ++k) {
    if (kinds_.kinds[k].window_left >= 0) continue;  // windowed layers keep their window
    sparse_step_.plans[k] =
        backend_.plan_sparse_attention(steps[k], attention_shape(kv, kinds_.kinds[k]), sel);
  }
}

void LlamaModel::update_bounds(size_t l, KVCache& kv) {
  if (!layer_is_sparse(int64_t(l)) || !sparse_step_.page_slots.defined()) return;
  backend_.update_page_bounds(kv.layers[l], kv.shape, sparse_step_.page_slots, kv.bounds[l]);
}

void LlamaModel::refresh_page_bounds(KVCache& kv, const std::vector<int32_t>& page_slots) {
  if (!sparse_.enabled || page_slots.empty()) return;
  NC_CHECK(page_slots.size() % 2 == 0, "refresh_page_bounds: {} values (pairs expected)",
           page_slots.size());
  Tensor t = backend_.alloc({int64_t(page_slots.size() / 2), 2}, DType::I32);
  backend_.copy_from_host(t, page_slots.data());
  for (size_t l = 0; l < kv.layers.size(); ++l)
    if (layer_is_sparse(int64_t(l)))
      backend_.update_page_bounds(kv.layers[l], kv.shape, t, kv.bounds[l]);
}

namespace {

// Layer pages as float32 keys on the host: fp8 codes (CPU memory) decoded and scaled by k_scale,
// as the CPU's update_page_bounds reads them; other dtypes through to_host_f32.
std::vector<float> host_keys(Backend& be, const Tensor& pages, const KVCacheShape& kv) {
  if (!kv.fp8) return be.to_host_f32(pages);
  NC_CHECK_AS(ErrorKind::Unsupported, pages.device() == Device::CPU,
              "check_page_bounds: fp8 pages are read on the CPU only");
  std::vector<float> out(size_t(pages.numel()));
  dequantize_e4m3(static_cast<const uint8_t*>(pages.data()), pages.numel(), out.data());
  for (float& x : out) x *= kv.k_scale;
  return out;
}

}  // namespace

void LlamaModel::check_page_bounds(const KVCache& kv, const std::vector<int32_t>& page_slots) {
  if (!sparse_.enabled) return;
  const KVCacheShape& shape = kv.shape;
  KVCacheShape f32_shape = shape;  // the keys come as float32 (host_keys)
  f32_shape.fp8 = false;
  PageBounds want(1, shape.num_kv_heads, shape.head_dim);
  const int64_t n = int64_t(shape.num_kv_heads) * shape.head_dim;
  for (size_t l = 0; l < kv.layers.size(); ++l) {
    if (!layer_is_sparse(int64_t(l))) continue;
    const std::vector<float> pages = host_keys(backend_, kv.layers[l], shape);
    const std::vector<float> got = backend_.to_host_f32(kv.bounds[l]);
    for (size_t i = 0; i + 1 < page_slots.size(); i += 2) {
      const int page = page_slots[i], slots = page_slots[i + 1];
      NC_CHECK(page >= 0 && page < shape.num_pages, "check_page_bounds: page {} outside [0, {})",
               page, shape.num_pages);
      want.rebuild_from(0, pages.data() + int64_t(page) * shape.elems_per_page(), f32_shape, slots);
      const float* g = got.data() + int64_t(page) * 2 * n;
      for (int64_t j = 0; j < n; ++j)
        NC_CHECK(g[j] == want.min(0)[j] && g[n + j] == want.max(0)[j],
                 "page bounds: layer {} page {} ({} valid slots) element {}: kept [{}, {}], "
                 "contents give [{}, {}]",
                 l, page, slots, j, g[j], g[n + j], want.min(0)[j], want.max(0)[j]);
    }
  }
}

}  // namespace nc
