// LlamaModel's CUDA graphs (llama.h, GraphOptions): decode-only steps padded to a batch bucket
// and replayed from a graph captured per (bucket, number of attention levels of each layer
// kind). A sliding kind's step (window_view) can have fewer levels than the full kind's, so
// every kind's level count is part of the key, and each kind plans into its own slot.
#include <algorithm>

#include "core/error.h"
#include "model/llama.h"

namespace nc {

std::vector<int> graph_buckets(int max_batch) {
  std::vector<int> b;
  for (int s : {1, 2, 4, 8})
    if (s < max_batch) b.push_back(s);
  for (int s = 16; s < max_batch; s += 16) b.push_back(s);
  if (max_batch >= 1) b.push_back(max_batch);
  return b;
}

void LlamaModel::set_graph_options(const GraphOptions& options) {
  NC_CHECK(!options.enabled || options.max_batch >= 1, "graphs: max_batch must be >= 1, got {}",
           options.max_batch);
  NC_CHECK(!options.enabled || options.max_levels >= 1, "graphs: max_levels must be >= 1, got {}",
           options.max_levels);
  if (!buckets_.empty()) backend_.clear_graphs();
  graph_opts_ = options;
  buckets_ = options.enabled ? graph_buckets(options.max_batch) : std::vector<int>{};
}

int LlamaModel::graph_key(size_t bucket, const std::vector<size_t>& levels) const {
  int64_t combo = 0;
  for (size_t k = levels.size(); k-- > 0;)
    combo = combo * graph_opts_.max_levels + int64_t(levels[k] - 1);
  return int(int64_t(bucket) + int64_t(buckets_.size()) * combo);
}

int LlamaModel::num_graphs() const {
  int64_t combos = 1;
  for (size_t k = 0; k < kinds_.kinds.size(); ++k) combos *= graph_opts_.max_levels;
  int n = 0;
  for (int64_t key = 0; key < combos * int64_t(buckets_.size()); ++key)
    n += backend_.has_graph(int(key));
  return n;
}

bool LlamaModel::graph_eligible(const ForwardInput& in, const KVCache& kv) const {
  if (!graph_opts_.enabled || scratch_page_ < 0 || !backend_.supports_graphs()) return false;
  // MoE layers and MLA attention run in graphs too: the expert scratch is reserved with the
  // workspace (model/moe.h) and MLA steps plan into graph slots (backend/cuda/mla_graph.h).
  const size_t nl = in.attention.levels.size();
  if (scratch_page_ >= kv.shape.num_pages || nl < 1 || nl > size_t(graph_opts_.max_levels))
    return false;
  // Cascade: shared levels read without mask; the backend decides whether it can plan them.
  for (size_t l = 0; l + 1 < nl; ++l)
    if (in.attention.levels[l].causal) return false;
  const PagedKVBatch& b = in.attention.levels.back();
  const int T = int(in.token_ids.size());
  if (T > graph_opts_.max_batch || b.batch_size() != T || int(in.logit_rows.size()) != T)
    return false;
  for (int i = 0; i < T; ++i) {
    // One new token per request, its logits in request order.
    if (b.qo_indptr[i + 1] != i + 1 || in.logit_rows[i] != i) return false;
  }
  return true;
}

std::optional<Tensor> LlamaModel::forward_graph(const ForwardInput& in, KVCache& kv) {
  const int T = int(in.token_ids.size());
  const size_t bi =
      size_t(std::lower_bound(buckets_.begin(), buckets_.end(), T) - buckets_.begin());
  const int B = buckets_[bi];
  // Pad to the bucket: each padding row is a request of one token at position 0 over the scratch
  // page (its K/V lands there; its logits are dropped), with an empty entry in each shared level.
  AttentionStep step = in.attention;
  step.num_tokens = B;
  const int ps = kv.shape.page_size;
  for (int i = T; i < B; ++i) {
    for (size_t l = 0; l + 1 < step.levels.size(); ++l) step.levels[l].add(1, {}, 0, ps);
    step.levels.back().add(1, {scratch_page_}, 1, ps);
  }
  const int max_pages = int((cfg_.served_positions() + ps - 1) / ps);
  const std::vector<AttentionStep> steps = kind_steps(step, ps);
  std::vector<size_t> levels;
  for (const AttentionStep& s : steps) {
    if (s.levels.empty() || s.levels.size() > size_t(graph_opts_.max_levels)) return std::nullopt;
    levels.push_back(s.levels.size());
  }
  const int key = graph_key(bi, levels);
  const int nk = int(steps.size());
  Plans plans;
  for (int k = 0; k < nk; ++k) {
    plans.push_back(backend_.plan_attention_graph(
        steps[size_t(k)], attention_shape(kv, kinds_.kinds[size_t(k)]), key * nk + k, max_pages));
    if (!plans.back()) return std::nullopt;
  }
  ensure_workspace(B, B);
  std::vector<int32_t> pos = in.positions;
  pos.resize(size_t(B), 0);
  upload_token_ids(in, B);
  backend_.copy_from_host(ws_.positions.slice(0, B), pos.data());
  Tensor logits = ws_.logits.slice(0, B);
  auto body = [&] {
    project_logits(run_decoder(plans, kv, B), logits);  // every row: a decode row each
  };
  host_prep_s_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_called_).count();
  backend_.mark_pass_begin();
  if (backend_.has_graph(key)) {
    backend_.replay(key);
  } else {
    // First use of the bucket: run it eagerly (this step's result), then record it.
    body();
    backend_.begin_capture();
    try {
      body();
    } catch (...) {
      backend_.end_capture(-1);  // discard
      throw;
    }
    backend_.end_capture(key);
  }
  backend_.mark_pass_end();
  ++graph_steps_;
  return logits.slice(0, T);
}

}  // namespace nc
