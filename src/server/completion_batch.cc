// A batch of completions prompts answered as one response (server/completion_batch.h).
#include "server/completion_batch.h"

#include <utility>

#include "core/error.h"

namespace nc::server {

std::vector<ParsedRequest> split_batch(ParsedRequest pr) {
  std::vector<ParsedRequest::BatchPrompt> more = std::move(pr.more_prompts);
  pr.more_prompts.clear();
  std::vector<ParsedRequest> out;
  out.reserve(more.size() + 1);
  out.push_back(pr);
  for (ParsedRequest::BatchPrompt& p : more) {
    ParsedRequest one = pr;
    one.prompt = std::move(p.text);
    one.prompt_ids = std::move(p.ids);
    one.prompt_is_ids = p.is_ids;
    out.push_back(std::move(one));
  }
  return out;
}

nlohmann::ordered_json merge_batch(const std::vector<nlohmann::ordered_json>& parts, int n) {
  NC_CHECK(!parts.empty(), "merge_batch: no responses");
  nlohmann::ordered_json out = parts[0];
  nlohmann::ordered_json& choices = out["choices"];
  nlohmann::ordered_json& usage = out["usage"];
  for (size_t p = 1; p < parts.size(); ++p) {
    for (nlohmann::ordered_json c : parts[p]["choices"]) {
      c["index"] = int64_t(p) * n + c["index"].get<int64_t>();
      choices.push_back(std::move(c));
    }
    for (const char* k : {"prompt_tokens", "completion_tokens", "total_tokens"})
      usage[k] = usage[k].get<int64_t>() + parts[p]["usage"][k].get<int64_t>();
  }
  return out;
}

}  // namespace nc::server
