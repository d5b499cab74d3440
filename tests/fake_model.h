// Test doubles for the engine: a token-level "model" whose KV cache stores each slot's token id
// and position, and whose logits are a pseudo-random function of the whole token history read
// back through the page table. Any paging mistake (a wrong page, a stale slot, a wrong position,
// a lost token after preemption) changes the history it sees and so the tokens it produces.
// reference_next() gives the logits a correct engine must see, computed without any paging.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/step_model.h"

namespace nc::fake {

inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t history_hash(const int32_t* ids, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = mix64(h ^ uint64_t(uint32_t(ids[i])));
  return h;
}

// Logits after the history: values in [-4, 4), distinct with overwhelming probability.
inline void history_logits(uint64_t h, int vocab, float* out) {
  for (int i = 0; i < vocab; ++i) {
    out[i] =
        float(double(mix64(h ^ (uint64_t(i) * 0xD1B54A32D192ED03ull)) >> 11) * 0x1.0p-53 * 8 - 4);
  }
}

inline std::vector<float> reference_logits(const std::vector<int32_t>& history, int vocab) {
  std::vector<float> l(vocab);
  history_logits(history_hash(history.data(), history.size()), vocab, l.data());
  return l;
}

// Greedy sampling for max_tokens tokens, EOS ignored (the fake model's tokens never stop early).
inline SamplingParams greedy_ignoring_eos(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

struct FakeStepStats {
  int num_tokens = 0;
  int num_seqs = 0;
  int num_logit_rows = 0;
  std::vector<int> q_lens;  // per entry, in batch order
};

// With device_sampling it also samples "on the device" (forward_sample, the backends' reference
// draw) and resolves placeholder ids (-1 - r: row r of its previous sampled step) as a backend
// does for asynchronous scheduling, counting them in placeholders_resolved.
class FakeModel : public StepModel {
 public:
  FakeModel(int vocab, int max_position, bool device_sampling = false)
      : vocab_(vocab), max_pos_(max_position), device_sampling_(device_sampling) {}

  int vocab_size() const override { return vocab_; }
  int max_position() const override { return max_pos_; }
  bool on_cuda() const override { return false; }
  // 8 bytes per slot (token id + position).
  int64_t kv_bytes_per_page(int page_size) const override { return int64_t(page_size) * 8; }
  void allocate_kv(int num_pages, int page_size, KVLayout) override {
    page_size_ = page_size;
    num_pages_ = num_pages;
    slots_.assign(size_t(num_pages) * page_size, Slot{});
  }

  bool can_sample_on_device() const override { return device_sampling_; }
  // The streaming window's shifts move each slot's recorded position (apply_shifts).
  void check_kv_shifts() override {}

  // The host tier: host pages of slots, copies in order (as Backend::copy_kv_pages).
  void allocate_host_kv(int num_pages) override {
    host_slots_.assign(size_t(num_pages) * page_size_, Slot{});
  }
  void transfer_kv(std::span<const KVPageCopy> copies) override {
    for (const KVPageCopy& c : copies) {
      NC_CHECK(c.device_page >= 0 && c.device_page < num_pages_ && c.host_page >= 0 &&
                   size_t(c.host_page + 1) * page_size_ <= host_slots_.size(),
               "fake model: copy between device page {} and host page {} out of range",
               c.device_page, c.host_page);
      Slot* dev = slots_.data() + size_t(c.device_page) * page_size_;
      Slot* host = host_slots_.data() + size_t(c.host_page) * page_size_;
      c.to_host ? std::copy(dev, dev + page_size_, host) : std::copy(host, host + page_size_, dev);
      ++(c.to_host ? pages_to_host : pages_to_device);
    }
  }
  // Weights as the memory plan and the host tier's reload rule see them (0: none).
  ModelMemory memory() const override { return {weight_bytes, 0}; }

  // The tokens forward_sample_async hands back: the reference draw over this step's logits.
  std::vector<int32_t> forward_sample(const ForwardInput& in,
                                      const std::vector<RowSampling>& rows) {
    NC_CHECK(device_sampling_, "fake model: device sampling is off");
    NC_CHECK(rows.size() == in.logit_rows.size(), "fake model: {} sampling rows for {} logit rows",
             rows.size(), in.logit_rows.size());
    const std::vector<float> logits = forward(in);
    std::unique_ptr<PendingTokens> drawn = draw_on_host(logits, vocab_, rows);
    std::vector<int32_t> ids = drawn->wait();
    last_logprobs_ = drawn->logprobs();
    last_sampled_ = ids;
    return ids;
  }

  std::vector<float> forward(const ForwardInput& raw) override {
    const ForwardInput in = resolve_placeholders(raw);
    const int T = int(in.token_ids.size());
    NC_CHECK(int(in.positions.size()) == T && in.attention.num_tokens == T,
             "fake model: inconsistent sizes");
    NC_CHECK(in.attention.levels.size() == 1, "fake model: expects one attention level");
    const PagedKVBatch& b = in.attention.levels[0];
    b.validate(T, page_size_, num_pages_);
    apply_shifts(in.kv_shifts);
    FakeStepStats st;
    st.num_tokens = T;
    st.num_seqs = b.batch_size();
    st.num_logit_rows = int(in.logit_rows.size());
    std::vector<int> row_entry(T);
    // Append the new tokens into the last q_len slots of each entry.
    for (int e = 0; e < b.batch_size(); ++e) {
      const int q = b.q_len(e), kv = b.kv_len(e, page_size_);
      st.q_lens.push_back(q);
      for (int i = 0; i < q; ++i) {
        const int row = b.qo_indptr[e] + i, pos = kv - q + i;
        NC_CHECK(in.positions[row] == pos, "fake model: row {} has position {}, its slot is {}",
                 row, in.positions[row], pos);
        NC_CHECK(pos < max_pos_, "fake model: position {} past its {} positions", pos, max_pos_);
        max_position_seen = std::max(max_position_seen, pos);
        slot(b, e, pos) = Slot{in.token_ids[row], pos};
        row_entry[row] = e;
      }
    }
    // Each logit row sees the tokens of its sequence up to and including itself (causal).
    std::vector<float> out(in.logit_rows.size() * size_t(vocab_));
    for (size_t k = 0; k < in.logit_rows.size(); ++k) {
      const int row = in.logit_rows[k];
      NC_CHECK(row >= 0 && row < T, "fake model: logit row {} outside [0, {})", row, T);
      const int e = row_entry[row];
      const int upto = in.positions[row] + 1;
      std::vector<int32_t> hist(upto);
      for (int p = 0; p < upto; ++p) {
        const Slot& s = slot(b, e, p);
        NC_CHECK(s.pos == p, "fake model: slot {} of entry {} holds position {}", p, e, s.pos);
        hist[p] = s.token;
      }
      history_logits(history_hash(hist.data(), hist.size()), vocab_, out.data() + k * vocab_);
    }
    steps.push_back(std::move(st));
    return out;
  }

  // Asynchronous sampling as a backend offers it; the fail_wait_at-th call (0-based) returns
  // tokens whose wait() throws, as a device error surfacing at the copy back would.
  std::unique_ptr<PendingTokens> forward_sample_async(
      const ForwardInput& in, const std::vector<RowSampling>& rows) override {
    std::vector<int32_t> ids = forward_sample(in, rows);
    if (num_async_calls_++ != fail_wait_at)
      return ready_tokens(std::move(ids), std::move(last_logprobs_));
    struct Failing : PendingTokens {
      std::vector<int32_t> wait() override { fail("fake model: the device failed"); }
    };
    return std::make_unique<Failing>();
  }

  std::vector<FakeStepStats> steps;
  int64_t placeholders_resolved = 0;
  int64_t weight_bytes = 0;
  int64_t pages_to_host = 0, pages_to_device = 0;
  int64_t pages_shifted = 0;
  int max_position_seen = -1;  // the highest position a step wrote
  int fail_wait_at = -1;

 private:
  // Placeholder ids name the previous forward_sample's rows; a plain forward ends that.
  ForwardInput resolve_placeholders(const ForwardInput& raw) {
    ForwardInput in = raw;
    for (int32_t& id : in.token_ids) {
      if (id >= 0) continue;
      const int64_t row = -int64_t(id) - 1;
      NC_CHECK(row < int64_t(last_sampled_.size()),
               "fake model: placeholder for row {} of a step that sampled {}", row,
               last_sampled_.size());
      id = last_sampled_[size_t(row)];
      ++placeholders_resolved;
    }
    last_sampled_.clear();
    return in;
  }

  struct Slot {
    int32_t token = -1;
    int32_t pos = -1;
  };
  // A slot written at position from + s moves to to + s; others (never written, or a previous
  // owner's) are not read and stay, so a shift that misses a valid slot shows when it is read.
  void apply_shifts(const std::vector<KVPageShift>& shifts) {
    for (const KVPageShift& k : shifts) {
      NC_CHECK(k.page >= 0 && k.page < num_pages_, "fake model: shift of page {}", k.page);
      for (int s = 0; s < page_size_; ++s) {
        Slot& slot = slots_[size_t(k.page) * page_size_ + s];
        if (slot.pos == k.from + s) slot.pos = k.to + s;
      }
      ++pages_shifted;
    }
  }
  Slot& slot(const PagedKVBatch& b, int e, int pos) {
    const int page = b.kv_indices[b.kv_indptr[e] + pos / page_size_];
    return slots_[size_t(page) * page_size_ + pos % page_size_];
  }

  int vocab_, max_pos_;
  bool device_sampling_ = false;
  int num_async_calls_ = 0;
  std::vector<int32_t> last_sampled_;
  std::vector<RowLogprobs> last_logprobs_;  // of the last forward_sample
  int page_size_ = 0, num_pages_ = 0;
  std::vector<Slot> slots_;
  std::vector<Slot> host_slots_;
};

// Byte-level codec: ids 0..255 are bytes, 256 = BOS "<s>", 257 = EOS "</s>" (special), the rest
// of the vocabulary (258..) decode to "<unk>".
class FakeCodec : public TextCodec {
 public:
  static constexpr int32_t kBos = 256, kEos = 257;
  std::vector<int32_t> encode(const std::string& text, bool add_special) const override {
    std::vector<int32_t> ids;
    if (add_special) ids.push_back(kBos);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const int32_t* ids, size_t n, bool skip_special) const override {
    std::string s;
    for (size_t i = 0; i < n; ++i) {
      if (ids[i] < 256)
        s += char(ids[i]);
      else if (!skip_special)
        s += ids[i] == kBos ? "<s>" : ids[i] == kEos ? "</s>" : "<unk>";
    }
    return s;
  }
  std::vector<int32_t> eos_token_ids() const override { return {kEos}; }
  std::string apply_chat_template(const std::vector<ChatMessage>& msgs,
                                  bool add_generation_prompt) const override {
    std::string s;
    for (const auto& m : msgs) s += "<" + m.role + ">" + m.content + "\n";
    if (add_generation_prompt) s += "<assistant>";
    return s;
  }
};

}  // namespace nc::fake
