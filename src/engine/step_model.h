// What the engine needs from a model and a tokenizer, as two small interfaces. The real ones
// (LlamaModel on a backend; the BPE tokenizer) are adapted in llama_runner.cc; tests plug in
// fakes that check the paged KV bookkeeping token by token.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/paged_kv.h"
#include "model/llama.h"
#include "nanocascade/engine.h"

namespace nc {

class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual int vocab_size() const = 0;
  virtual int max_position() const = 0;  // the longest sequence the model supports
  virtual bool on_cuda() const = 0;
  // Bytes of one KV page (all layers, K and V).
  virtual int64_t kv_bytes_per_page(int page_size) const = 0;
  // Decoder layers (each runs one attention per step); the cascade cost model weighs the bytes
  // of one layer against the fixed cost of one more level per layer.
  virtual int num_layers() const { return 1; }
  // Attention FLOPs of one query row against one key in one layer (4 * q_heads * head_dim);
  // 0 keeps the cost model's default. Weighs the compute of a shared level.
  virtual double attention_flops_per_row_token() const { return 0; }
  // Allocates the KV cache; called once before the first forward.
  virtual void allocate_kv(int num_pages, int page_size, KVLayout layout) = 0;
  // One step: host float32 logits, [in.logit_rows.size(), vocab_size()].
  virtual std::vector<float> forward(const ForwardInput& in) = 0;

  // Allocates what steps of up to max_tokens tokens and max_rows logit rows need, before the KV
  // cache is sized from the memory left.
  virtual void reserve(int max_tokens, int max_rows) {}
  virtual int64_t weight_bytes() const { return 0; }
  // Memory the model's device could still give (Backend::free_memory_bytes).
  virtual int64_t free_memory_bytes() const;
  virtual int64_t workspace_bytes() const { return 0; }
  // Device seconds of the forward passes so far (0 when not measured).
  virtual double device_seconds() { return 0; }
  // Host seconds before each forward pass's device work starts (LlamaModel::host_prep_seconds).
  virtual double host_prep_seconds() const { return 0; }
  virtual int64_t num_graph_steps() const { return 0; }
  // Device-side sampling (LlamaModel::forward_sample): one token per logit row, drawn as
  // Backend::sample_tokens says (argmax where inv_temperature is 0, else a Gumbel-max draw with
  // the row's seed among what top-k / top-p / min-p leave). Only where supported. Its input may
  // name the previous forward_sample's tokens by placeholder ids (ForwardInput::token_ids).
  virtual bool can_sample_on_device() const { return false; }
  virtual std::vector<int32_t> forward_sample(const ForwardInput& in,
                                              const std::vector<RowSampling>& rows);
  // The same without waiting for the tokens (the default waits: a model on the host has
  // nothing to overlap).
  virtual std::unique_ptr<PendingTokens> forward_sample_async(
      const ForwardInput& in, const std::vector<RowSampling>& rows) {
    return ready_tokens(forward_sample(in, rows));
  }
};

struct StepModelOptions {
  std::string backend = "cpu";  // "cpu" | "cuda"
  bool dummy_weights = false;   // seeded random weights from the config alone
  uint64_t dummy_seed = 0;
  bool cuda_graphs = false;
  int graph_max_batch = 256;
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const = 0;
  // Bytes of the ids' text; may end in the middle of a UTF-8 character.
  virtual std::string decode(const int32_t* ids, size_t n, bool skip_special_tokens) const = 0;
  virtual std::vector<int32_t> eos_token_ids() const = 0;
  // The prompt text for chat messages, with the model's chat template. Throws nc::Error when
  // the model has no template or a role is unknown.
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const = 0;
};

// The real model and tokenizer for a path (.gguf or an HF folder) on a backend ("cpu" |
// "cuda"). Defined in llama_runner.cc.
std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const std::string& backend);
std::unique_ptr<StepModel> make_llama_step_model(const std::string& path,
                                                 const StepModelOptions& options);
std::unique_ptr<TextCodec> make_text_codec(const std::string& path);
// For models without a tokenizer (dummy weights): text is token ids written as decimal numbers
// separated by spaces; decoding writes " <id>" per token. No EOS.
std::unique_ptr<TextCodec> make_number_codec(int vocab_size);

}  // namespace nc
