// Engine::generate (prompts run to completion through add_request/step) and Engine::warmup (a
// short request, then one batch at each CUDA graph's size, around the prefix cache).
#include <map>

#include "core/error.h"
#include "engine/engine_impl.h"
#include "nanocascade/engine.h"

namespace nc {

bool CompletionOutput::append(const RequestOutput& o) {
  id = o.id;
  token_ids.insert(token_ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
  logprobs.insert(logprobs.end(), o.logprobs.begin(), o.logprobs.end());
  prompt_logprobs.insert(prompt_logprobs.end(), o.prompt_logprobs.begin(), o.prompt_logprobs.end());
  text += o.text_delta;
  if (o.finished) {
    finish_reason = o.finish_reason;
    stop_string = o.stop_string;
    stop_token_id = o.stop_token_id;
    abort_reason = o.abort_reason;
    time_to_first_token_s = o.time_to_first_token_s;
    time_per_output_token_s = o.time_per_output_token_s;
  }
  return o.finished;
}

namespace {

template <typename Prompt>
std::vector<CompletionOutput> run_to_completion(Engine& engine, const std::vector<Prompt>& prompts,
                                                const SamplingParams& params) {
  std::map<RequestId, size_t> index;
  std::vector<CompletionOutput> results(prompts.size());
  try {
    for (size_t i = 0; i < prompts.size(); ++i) index[engine.add_request(prompts[i], params)] = i;
  } catch (...) {
    for (const auto& [id, i] : index) engine.abort(id);
    while (engine.has_unfinished()) engine.step();
    throw;
  }
  size_t done = 0;
  while (done < prompts.size()) {
    NC_CHECK(engine.has_unfinished(), "generate: the engine stopped with requests unfinished");
    for (RequestOutput& o : engine.step()) {
      auto it = index.find(o.id);
      if (it == index.end()) continue;
      done += results[it->second].append(o);
    }
  }
  return results;
}

// Points the scheduler at no prefix cache until it goes (warm-up requests neither use nor
// fill the cache).
class PrefixCacheBypass {
 public:
  PrefixCacheBypass(Scheduler& sched, PrefixCache* cache) : sched_(sched), cache_(cache) {
    sched_.set_prefix_cache(nullptr);
  }
  ~PrefixCacheBypass() { sched_.set_prefix_cache(cache_); }
  PrefixCacheBypass(const PrefixCacheBypass&) = delete;
  PrefixCacheBypass& operator=(const PrefixCacheBypass&) = delete;

 private:
  Scheduler& sched_;
  PrefixCache* cache_;
};

}  // namespace

std::vector<CompletionOutput> Engine::generate(const std::vector<std::string>& prompts,
                                               const SamplingParams& params) {
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& p : prompts) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, !p.empty(), "generate: empty prompt");
    ids.push_back(encode(p, true, /*parse_special=*/false));  // as add_request's text
  }
  return generate(ids, params);
}

std::vector<CompletionOutput> Engine::generate(const std::vector<std::vector<int32_t>>& prompts,
                                               const SamplingParams& params) {
  std::vector<CompletionOutput> out = run_to_completion(*this, prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) out[i].prompt_token_ids = prompts[i];
  return out;
}

void Engine::warmup() {
  NC_CHECK(!has_unfinished(), "warmup: the engine still has {} requests; warm up before serving",
           impl_->requests->size());
  const PrefixCacheBypass bypass(*impl_->sched, impl_->prefix_cache.get());
  // One short request through prefill and decode steps (as nano-vLLM warms up).
  SamplingParams warm;
  warm.max_tokens = 4;
  generate(std::vector<std::vector<int32_t>>{{1, 2, 3, 4}}, warm);
  // One prefill step, then one decode step of the whole batch, at each CUDA graph's batch size:
  // every graph is captured before anything is measured (nano-vLLM captures at start-up too).
  warm.max_tokens = 2;
  for (int batch : impl_->model->graph_batch_sizes()) {
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < batch; ++i) prompts.push_back({i + 1, 2, 3, 4});  // distinct prompts
    generate(prompts, warm);
  }
  // A request that stopped on EOS may still be named by the step in flight.
  while (has_unfinished()) step();
}

}  // namespace nc
