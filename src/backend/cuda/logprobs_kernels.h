// Log-probabilities and logit_bias on the device (issue #18 item 4; backend/logprobs.h is the
// contract): the CUDA sampler computes the OpenAI logprobs of a step's rows from the logits it
// draws from, without copying a row to the host.
//
// The numbers are backend/logprobs.h's: lse = max + log(sum exp(x - max)) with the sum in double,
// a token's log-probability x - lse in float32 (-inf where the row has no finite logit), the k
// most likely ids by (value descending, id ascending). They are taken from the logits before
// logit_bias (and before temperature and the top-k/top-p/min-p filters), after the structured
// output mask, as the host path does.
//
// Per row the device writes one LogprobSlot. The order on the stream: logprob_top_k (reads the raw
// row), apply_logit_bias (adds the biases in place, keeping each biased entry's raw value), the
// draw, then token_logprobs (the drawn token's raw value minus lse).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace nc::cuda {

inline constexpr int kMaxTopLogprobs = 20;  // backend/logprobs.h's kMaxLogprobs

struct LogprobSlot {
  float lse;
  float token_logprob;
  int32_t top_ids[kMaxTopLogprobs];
  float top_logprobs[kMaxTopLogprobs];
};

// Rows with k[r] in [0, kMaxTopLogprobs]: lse and the k best ids of row r of `logits` [rows, vocab]
// into slots[r]; rows with k[r] < 0 are skipped.
void logprob_top_k(const float* logits, int rows, int vocab, const int32_t* k, LogprobSlot* slots,
                   cudaStream_t stream);

// Bias entry j: logits[row[j], id[j]] += value[j], its value before written to raw[j]. Entries are
// grouped by row (a row's entries contiguous, at most one per id).
void apply_logit_bias(float* logits, int vocab, const int32_t* row, const int32_t* id,
                      const float* value, int entries, float* raw, cudaStream_t stream);

// Rows with k[r] >= 0: slots[r].token_logprob for the drawn ids[r], from its raw logit (the biased
// entries' raw values: entries bias_begin[r] .. bias_begin[r + 1] of bias_id/raw; bias_begin null
// when no row is biased).
void token_logprobs(const float* logits, int rows, int vocab, const int32_t* k, const int32_t* ids,
                    const int32_t* bias_begin, const int32_t* bias_id, const float* raw,
                    LogprobSlot* slots, cudaStream_t stream);

}  // namespace nc::cuda
