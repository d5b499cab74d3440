// The server tests' harness: see tests/server_harness.h.
#include "server_harness.h"

#include <algorithm>
#include <cstdio>

#include "engine/step_model.h"

namespace nc::test_server {
namespace {

// The fake byte codec, but every id decodes to a printable ASCII character so that outputs are
// valid UTF-8 and compare byte for byte through JSON.
class AsciiCodec : public fake::FakeCodec {
 public:
  std::string decode(const int32_t* ids, size_t n, bool skip_special) const override {
    std::string s;
    for (size_t i = 0; i < n; ++i) {
      if (ids[i] < 256) {
        s += char(32 + ids[i] % 95);
      } else if (!skip_special) {
        s += ids[i] == kBos ? "<s>" : ids[i] == kEos ? "</s>" : "<unk>";
      }
    }
    return s;
  }
};

// AsciiCodec, but a prompt "raise:<kind>" makes encode() throw an nc::Error of that kind (as
// the tokenizer or the engine would), to follow each kind from the engine thread to the client.
class RaisingCodec : public AsciiCodec {
 public:
  std::vector<int32_t> encode(const std::string& text, bool add_special) const override {
    for (ErrorKind k : {ErrorKind::Internal, ErrorKind::InvalidArgument, ErrorKind::ContextLength,
                        ErrorKind::Unsupported, ErrorKind::NotFound, ErrorKind::Overloaded}) {
      if (text == std::string("raise:") + error_kind_name(k)) fail_as(k, "raised {}", text);
    }
    return AsciiCodec::encode(text, add_special);
  }
};

// Sleeps before each forward so that requests overlap (streams last, clients can leave).
class SlowModel : public StepModel {
 public:
  SlowModel(std::unique_ptr<StepModel> inner, std::shared_ptr<std::atomic<int>> delay_us)
      : inner_(std::move(inner)), delay_us_(std::move(delay_us)) {}
  int vocab_size() const override { return inner_->vocab_size(); }
  int max_position() const override { return inner_->max_position(); }
  bool on_cuda() const override { return false; }
  int64_t kv_bytes_per_page(int ps) const override { return inner_->kv_bytes_per_page(ps); }
  void allocate_kv(int n, int ps, KVLayout l) override { inner_->allocate_kv(n, ps, l); }
  std::vector<float> forward(const ForwardInput& in) override {
    if (int d = delay_us_->load(); d > 0) std::this_thread::sleep_for(std::chrono::microseconds(d));
    return inner_->forward(in);
  }

 private:
  std::unique_ptr<StepModel> inner_;
  std::shared_ptr<std::atomic<int>> delay_us_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(p / 100.0 * double(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

std::unique_ptr<Engine> make_engine(const EngineSetup& s,
                                    std::shared_ptr<std::atomic<int>> delay_us) {
  EngineConfig cfg;
  cfg.model = std::string("/models/") + kModel + ".gguf";  // only names the served model
  cfg.page_size = s.page_size;
  cfg.max_num_seqs = s.max_num_seqs;
  cfg.max_model_len = s.max_model_len;
  cfg.max_num_batched_tokens = 2048;
  cfg.grammar_compile_timeout_s = s.grammar_timeout_s;
  cfg.kv_cache_memory = std::to_string(int64_t(s.pages) * s.page_size * 8);
  std::unique_ptr<StepModel> model = std::make_unique<fake::FakeModel>(kVocab, s.max_pos);
  if (delay_us) model = std::make_unique<SlowModel>(std::move(model), delay_us);
  std::unique_ptr<TextCodec> codec =
      s.raising_codec ? std::make_unique<RaisingCodec>() : std::make_unique<AsciiCodec>();
  return std::make_unique<Engine>(cfg, std::move(model), std::move(codec));
}

Alone run_alone(const std::function<RequestId(Engine&)>& add, const EngineSetup& es) {
  std::unique_ptr<Engine> e = make_engine(es);
  const RequestId id = add(*e);
  Alone a;
  while (e->has_unfinished()) {
    for (const RequestOutput& o : e->step()) {
      if (o.id != id) continue;
      a.text += o.text_delta;
      a.token_ids.insert(a.token_ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      if (o.finished) {
        a.finish_reason = finish_reason_name(o.finish_reason);
        a.prompt_tokens = o.num_prompt_tokens;
        a.completion_tokens = o.num_completion_tokens;
      }
    }
  }
  return a;
}

Alone complete_alone(const std::string& prompt, const SamplingParams& sp, const EngineSetup& es) {
  return run_alone([&](Engine& e) { return e.add_request(prompt, sp); }, es);
}

Alone chat_alone(const std::vector<ChatMessage>& msgs, const SamplingParams& sp) {
  return run_alone([&](Engine& e) { return e.add_chat_request(msgs, sp); });
}

SamplingParams greedy(int max_tokens) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = max_tokens;
  return sp;
}

SseBody parse_sse(const std::string& body) {
  SseBody out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      out.ok = false;
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) {
      out.ok = false;
      continue;
    }
    const std::string data = ev.substr(6);
    if (data == "[DONE]") {
      out.done = true;
      if (pos != body.size()) out.ok = false;  // nothing after [DONE]
      continue;
    }
    out.events.push_back(json::parse(data));
  }
  return out;
}

Streamed collect(const SseBody& sse, bool chat) {
  Streamed s;
  for (const json& ev : sse.events) {
    if (ev.contains("usage") && !ev["usage"].is_null()) s.usage = ev["usage"];
    if (!ev.contains("choices") || ev["choices"].empty()) continue;
    const json& c = ev["choices"][0];
    if (chat) {
      const json& d = c["delta"];
      if (d.contains("role")) ++s.role_chunks;
      if (d.contains("content")) s.text += d["content"].get<std::string>();
    } else {
      s.text += c["text"].get<std::string>();
    }
    if (!c["finish_reason"].is_null()) {
      s.finish_reason = c["finish_reason"];
      s.stop_reason = c.value("stop_reason", json("absent"));
    }
  }
  return s;
}

void expect_openai_error(const httplib::Result& r, int status, const std::string& what) {
  ASSERT_TRUE(r) << what << ": no response (" << httplib::to_string(r.error()) << ")";
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  json j;
  ASSERT_NO_THROW(j = json::parse(r->body)) << what << ": body is not JSON: " << r->body;
  ASSERT_TRUE(j.contains("error") && j["error"].is_object()) << what << ": " << r->body;
  const json& e = j["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string() &&
              !e["message"].get<std::string>().empty())
      << what;
  EXPECT_TRUE(e.contains("type") && e["type"].is_string()) << what;
  EXPECT_TRUE(e.contains("param")) << what;
  EXPECT_TRUE(e.contains("code")) << what;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << what;
}

json chat_body(const std::string& content, int max_tokens, bool stream) {
  json b = {{"model", kModel},
            {"messages", json::array({{{"role", "user"}, {"content", content}}})},
            {"max_tokens", max_tokens},
            {"temperature", 0}};
  if (stream) b["stream"] = true;
  return b;
}

json completion_body(const std::string& prompt, int max_tokens, bool stream) {
  json b = {{"model", kModel}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  if (stream) b["stream"] = true;
  return b;
}

// A streaming POST that hands each received piece to `on_data` (return false to hang up).
httplib::Result post_stream(const TestServer& ts, const std::string& path, const json& body,
                            std::function<bool(const char*, size_t)> on_data) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [on_data](const char* d, size_t n, uint64_t, uint64_t) {
    return on_data(d, n);
  };
  return ts.client()->send(req);
}

// Runs every body as a streaming completion from its own thread, all at once.
std::vector<ClientRun> run_streaming_clients(int port, const std::vector<json>& bodies) {
  std::vector<ClientRun> runs(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i) {
    threads.emplace_back([&, i] {
      json body = bodies[i];
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(300, 0);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = body.dump();
      req.set_header("Content-Type", "application/json");
      std::string buf;
      const auto start = Clock::now();
      bool first = true;
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        if (first) runs[i].ttft_s = std::chrono::duration<double>(Clock::now() - start).count();
        first = false;
        buf.append(d, n);
        return true;
      };
      auto r = c.send(req);
      runs[i].e2e_s = std::chrono::duration<double>(Clock::now() - start).count();
      if (!r) return;
      runs[i].status = r->status;
      const SseBody sse = parse_sse(buf);
      const Streamed st = collect(sse, false);
      runs[i].text = st.text;
      runs[i].finish_reason = st.finish_reason;
      if (st.usage.is_object() && sse.done)
        runs[i].completion_tokens = st.usage["completion_tokens"];
    });
  }
  for (auto& t : threads) t.join();
  return runs;
}

void print_load(const char* tag, const std::vector<ClientRun>& runs, double wall_s) {
  int64_t tokens = 0;
  std::vector<double> ttft, e2e;
  for (const ClientRun& r : runs) {
    tokens += std::max(0, r.completion_tokens);
    ttft.push_back(r.ttft_s * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
  }
  std::printf(
      "[%s] %zu streaming clients, %lld tokens in %.3f s: %.1f tok/s, %.2f req/s\n"
      "[%s] first byte ms p50 %.1f p90 %.1f p99 %.1f | end-to-end ms p50 %.1f p90 %.1f p99 "
      "%.1f\n",
      tag, runs.size(), (long long)tokens, wall_s, double(tokens) / wall_s,
      double(runs.size()) / wall_s, tag, percentile(ttft, 50), percentile(ttft, 90),
      percentile(ttft, 99), percentile(e2e, 50), percentile(e2e, 90), percentile(e2e, 99));
}

}  // namespace nc::test_server
