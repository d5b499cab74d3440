// A completions request whose `prompt` is a list of several prompts (OpenAI's and vLLM's batch,
// as evaluation harnesses send them): each prompt is its own request with the same parameters,
// all submitted before any is waited for, so that the engine runs them in one batch; the answer
// is one response whose choices are each prompt's in turn (index = prompt * n + choice, as
// OpenAI numbers them) and whose usage sums theirs. A choice's text, logprobs and finish reason
// are what the prompt alone would have given. Streaming a batch is refused (400 naming
// `stream`); a batch of one is an ordinary request.
#pragma once
#include <vector>

#include <nlohmann/json.hpp>

#include "server/request_parser.h"

namespace nc::server {

// One request per prompt (the first keeps its own prompt; more_prompts emptied in every one).
std::vector<ParsedRequest> split_batch(ParsedRequest pr);

// The prompts' responses (each with n choices indexed from 0, in prompt order) as one.
nlohmann::ordered_json merge_batch(const std::vector<nlohmann::ordered_json>& parts, int n);

}  // namespace nc::server
