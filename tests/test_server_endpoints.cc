// The HTTP server end to end (tests/server_harness.h): each endpoint's answers against the engine's
// own outputs for the same request run alone on a fresh engine, and independent counts (prompt
// tokens from the codec's rules, the chat template's text); clients that leave mid-request; many
// concurrent streaming clients.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/step_model.h"
#include "nanocascade/engine.h"
#include "server/api_error.h"
#include "server/engine_loop.h"
#include "server/metrics.h"
#include "server/request_parser.h"
#include "server/server.h"
#include "server_harness.h"

namespace nc {

using namespace test_server;  // NOLINT: the harness is this suite's vocabulary

// ---------------------------------------------------------------------------------------------
// Endpoints against the engine's own outputs.

TEST(ServerEndpoints, ModelsHealthMetrics) {
  TestServer ts;
  auto r = ts.client()->Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const json models = json::parse(r->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], kModel);
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["max_model_len"], 4096);
  r = ts.client()->Get((std::string("/v1/models/") + kModel).c_str());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  expect_openai_error(ts.client()->Get("/v1/models/other"), 404, "unknown model card");

  r = ts.client()->Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "ok");

  ASSERT_TRUE(ts.post("/v1/completions", completion_body("hello", 5)));
  r = ts.client()->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  for (const char* name :
       {"nanocascade_requests_running 0", "nanocascade_requests_waiting 0",
        "nanocascade_prompt_tokens_total 6", "nanocascade_generation_tokens_total",
        "# TYPE nanocascade_time_to_first_token_seconds histogram",
        "nanocascade_time_to_first_token_seconds_count 1",
        "nanocascade_time_per_output_token_seconds_bucket{le=\"+Inf\"} 1",
        "nanocascade_kv_pages{state=\"used\"} 0", "nanocascade_kv_pages{state=\"free\"} 8192",
        "nanocascade_requests_finished_total{finish_reason=",
        "nanocascade_http_responses_total{code=\"200\"}"}) {
    EXPECT_NE(r->body.find(name), std::string::npos) << name << "\n" << r->body;
  }
}

// requests_waiting counts sequences, as requests_running does: a request of n choices beyond
// the engine's two seats leaves its other choices, and the request after it, waiting.
TEST(ServerEndpoints, MetricsCountEveryWaitingChoice) {
  EngineSetup es;
  es.max_num_seqs = 2;
  TestServer ts(es, {}, /*delay_us=*/2000);
  json four = completion_body("story", 200);
  four["n"] = 4;
  four["ignore_eos"] = true;
  json one = completion_body("another", 200);
  one["ignore_eos"] = true;
  std::thread a([&] { ts.post("/v1/completions", four); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::thread b([&] { ts.post("/v1/completions", one); });
  std::string seen;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    seen = ts.client()->Get("/metrics")->body;
    if (seen.find("nanocascade_requests_waiting 3\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(seen.find("nanocascade_requests_running 2\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("nanocascade_requests_waiting 3\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("vllm:num_requests_waiting{model_name="), std::string::npos) << seen;
  ts.delay_us->store(0);
  a.join();
  b.join();
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerEndpoints, CompletionEqualsEngineAlone) {
  TestServer ts;
  const std::string prompt = "The quick brown fox";
  const Alone ref = complete_alone(prompt, greedy(24));
  auto r = ts.post("/v1/completions", completion_body(prompt, 24));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], kModel);
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["text"], ref.text);
  EXPECT_EQ(j["choices"][0]["finish_reason"], ref.finish_reason);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  // BOS + one token per byte.
  EXPECT_EQ(j["usage"]["prompt_tokens"], 1 + int(prompt.size()));
  EXPECT_EQ(j["usage"]["completion_tokens"], ref.completion_tokens);
  EXPECT_EQ(j["usage"]["total_tokens"], 1 + int(prompt.size()) + ref.completion_tokens);
  EXPECT_TRUE(ts.wait_idle());
}

TEST(ServerEndpoints, TokenIdPromptEqualsEngineAlone) {
  TestServer ts;
  const std::vector<int32_t> ids = {5, 77, 200, 13, 256, 42};
  SamplingParams sp = greedy(16);
  sp.ignore_eos = true;
  const Alone ref = run_alone([&](Engine& e) { return e.add_request(ids, sp); });
  json body = {{"model", kModel},
               {"prompt", ids},
               {"max_tokens", 16},
               {"temperature", 0},
               {"ignore_eos", true}};
  auto r = ts.post("/v1/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], ref.text);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], int(ids.size()));
  EXPECT_EQ(j["usage"]["completion_tokens"], 16);
}

TEST(ServerEndpoints, ChatAppliesTemplateAndEqualsEngineAlone) {
  TestServer ts;
  const std::vector<ChatMessage> msgs = {{"system", "You are terse."}, {"user", "Hi there"}};
  const Alone ref = chat_alone(msgs, greedy(20));
  json body = {{"model", kModel},
               {"messages",
                {{{"role", "system"}, {"content", "You are terse."}},
                 {{"role", "user"}, {"content", "Hi there"}}}},
               {"max_tokens", 20},
               {"temperature", 0}};
  auto r = ts.post("/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], ref.text);
  EXPECT_EQ(j["choices"][0]["finish_reason"], ref.finish_reason);
  // The fake codec's template, one token per byte and no BOS (the template text is encoded
  // without special tokens).
  const std::string templated = "<system>You are terse.\n<user>Hi there\n<assistant>";
  EXPECT_EQ(j["usage"]["prompt_tokens"], int(templated.size()));
  EXPECT_EQ(j["usage"]["completion_tokens"], ref.completion_tokens);
}

TEST(ServerEndpoints, ChatStreamEqualsEngineAlone) {
  TestServer ts;
  const Alone ref = chat_alone({{"user", "stream me"}}, greedy(30));
  json body = chat_body("stream me", 30, true);
  body["stream_options"] = {{"include_usage", true}};
  auto r = ts.post("/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const SseBody sse = parse_sse(r->body);
  EXPECT_TRUE(sse.ok);
  EXPECT_TRUE(sse.done);
  const Streamed s = collect(sse, true);
  EXPECT_EQ(s.role_chunks, 1);
  EXPECT_EQ(s.text, ref.text);
  EXPECT_EQ(s.finish_reason, ref.finish_reason);
  ASSERT_TRUE(s.usage.is_object());
  EXPECT_EQ(s.usage["prompt_tokens"], int(std::string("<user>stream me\n<assistant>").size()));
  EXPECT_EQ(s.usage["completion_tokens"], ref.completion_tokens);
  EXPECT_EQ(s.usage["total_tokens"], s.usage["prompt_tokens"].get<int>() + ref.completion_tokens);
  for (const json& ev : sse.events) {
    EXPECT_EQ(ev["object"], "chat.completion.chunk");
    EXPECT_TRUE(ev.contains("usage"));  // null on every chunk but the last, with include_usage
  }
  EXPECT_TRUE(sse.events.back()["choices"].empty());
}

TEST(ServerEndpoints, CompletionStreamWithoutUsage) {
  TestServer ts;
  const Alone ref = complete_alone("abc", greedy(12));
  auto r = ts.post("/v1/completions", completion_body("abc", 12, true));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const SseBody sse = parse_sse(r->body);
  EXPECT_TRUE(sse.ok && sse.done);
  const Streamed s = collect(sse, false);
  EXPECT_EQ(s.text, ref.text);
  EXPECT_EQ(s.finish_reason, ref.finish_reason);
  EXPECT_TRUE(s.usage.is_null());
  for (const json& ev : sse.events) {
    EXPECT_EQ(ev["object"], "text_completion");
    EXPECT_FALSE(ev.contains("usage"));
  }
}

TEST(ServerEndpoints, SeededSamplingEqualsEngineAlone) {
  TestServer ts;
  SamplingParams sp;
  sp.temperature = 0.9f;
  sp.top_k = 50;
  sp.top_p = 0.95f;
  sp.min_p = 0.01f;
  sp.presence_penalty = 0.5f;
  sp.frequency_penalty = 0.25f;
  sp.seed = 1234;
  sp.max_tokens = 40;
  const Alone ref = complete_alone("sampling", sp);
  json body = {{"model", kModel},
               {"prompt", "sampling"},
               {"max_tokens", 40},
               {"temperature", 0.9},
               {"top_k", 50},
               {"top_p", 0.95},
               {"min_p", 0.01},
               {"presence_penalty", 0.5},
               {"frequency_penalty", 0.25},
               {"seed", 1234}};
  for (bool stream : {false, true}) {
    body["stream"] = stream;
    auto r = ts.post("/v1/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const std::string text = stream ? collect(parse_sse(r->body), false).text
                                    : json::parse(r->body)["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(text, ref.text) << "stream=" << stream;
  }
}

TEST(ServerEndpoints, StopStringCutsTheText) {
  TestServer ts;
  SamplingParams sp = greedy(40);
  sp.ignore_eos = true;
  const Alone full = complete_alone("stop here", sp);
  ASSERT_GE(full.text.size(), 12u);
  const std::string stop = full.text.substr(8, 3);
  json body = completion_body("stop here", 40);
  body["ignore_eos"] = true;
  body["stop"] = json::array({"never-in-output-\x01", stop});
  for (bool stream : {false, true}) {
    body["stream"] = stream;
    auto r = ts.post("/v1/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    std::string text, reason;
    json stop_reason;
    if (stream) {
      const Streamed s = collect(parse_sse(r->body), false);
      text = s.text;
      reason = s.finish_reason;
      stop_reason = s.stop_reason;
    } else {
      const json j = json::parse(r->body);
      text = j["choices"][0]["text"];
      reason = j["choices"][0]["finish_reason"];
      stop_reason = j["choices"][0]["stop_reason"];
    }
    EXPECT_EQ(text, full.text.substr(0, full.text.find(stop))) << "stream=" << stream;
    EXPECT_EQ(reason, "stop");
    EXPECT_EQ(stop_reason, stop) << "stream=" << stream;  // vLLM's field: which stop it was
  }
  // The body's stop_reason, whole or streamed (null when the request failed: asserted).
  auto stop_reason_of = [&](bool stream) {
    body["stream"] = stream;
    auto r = ts.post("/v1/completions", body);
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    if (!r || r->status != 200) return json();
    return stream ? collect(parse_sse(r->body), false).stop_reason
                  : json::parse(r->body)["choices"][0]["stop_reason"];
  };
  // Ended otherwise (here by the length), the field is null.
  body["stop"] = json::array({"never-in-output-\x01"});
  body["max_tokens"] = 4;
  for (bool stream : {false, true})
    EXPECT_TRUE(stop_reason_of(stream).is_null()) << " stream=" << stream;
  // Ended by one of stop_token_ids, the field is that id (vLLM's).
  body.erase("stop");
  body["max_tokens"] = 40;
  const int32_t third = full.token_ids.at(2);
  body["stop_token_ids"] = json::array({third});
  for (bool stream : {false, true})
    EXPECT_EQ(stop_reason_of(stream), third) << " stream=" << stream;
}

// Without max_tokens a completion stops at 16 tokens (OpenAI's default), or at the context's
// end when fewer are left; a chat runs to the context's end (vLLM's).
TEST(ServerEndpoints, MissingMaxTokensIs16ForCompletionsAndTheContextForChat) {
  EngineSetup es;
  es.max_model_len = 48;
  TestServer ts(es);
  auto usage_of = [&](const std::string& path, const json& body) {
    auto r = ts.post(path, body);
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    const json j = r && r->status == 200 ? json::parse(r->body) : json::object();
    EXPECT_EQ(j.value("choices", json::array({json::object()}))[0].value("finish_reason", ""),
              "length");
    return j.value("usage", json::object());
  };
  json body = {
      {"model", kModel}, {"prompt", "0123456789"}, {"temperature", 0}, {"ignore_eos", true}};
  json u = usage_of("/v1/completions", body);
  EXPECT_EQ(u["prompt_tokens"], 11);
  EXPECT_EQ(u["completion_tokens"], 16);
  body["prompt"] = std::string(40, '7');  // 41 tokens: 7 left
  EXPECT_EQ(usage_of("/v1/completions", body)["completion_tokens"], 48 - 41);
  json chat = {{"model", kModel},
               {"messages", {{{"role", "user"}, {"content", "hi"}}}},
               {"temperature", 0},
               {"ignore_eos", true}};
  u = usage_of("/v1/chat/completions", chat);
  EXPECT_EQ(u["completion_tokens"].get<int>(), 48 - u["prompt_tokens"].get<int>());
  // Explicit max_tokens over the rest of the context is an error.
  body["prompt"] = "0123456789";
  body["max_tokens"] = 48 - 11 + 1;
  auto bad = ts.post("/v1/completions", body);
  expect_openai_error(bad, 400, "max_tokens past the context");
  EXPECT_EQ(json::parse(bad->body)["error"]["code"], "context_length_exceeded");
}

TEST(ServerEndpoints, SharedPrefixHitsTheCacheAndKeepsOutputs) {
  TestServer ts;
  const std::string system(100, 's');  // several full pages of a shared prefix
  const std::vector<ChatMessage> msgs = {{"system", system}, {"user", "question"}};
  const Alone ref = chat_alone(msgs, greedy(12));
  json body = {
      {"model", kModel},
      {"messages",
       {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", "question"}}}},
      {"max_tokens", 12},
      {"temperature", 0}};
  for (int i = 0; i < 3; ++i) {
    auto r = ts.post("/v1/chat/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], ref.text) << i;
  }
  EXPECT_TRUE(ts.wait_idle());
  EXPECT_GT(ts.stats().cache.hit_tokens, 0);
  const std::string m = ts.client()->Get("/metrics")->body;
  EXPECT_NE(m.find(fmt::format("nanocascade_prefix_cache_hit_tokens_total {}",
                               ts.stats().cache.hit_tokens)),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("nanocascade_prefix_cache_hit_rate"), std::string::npos);
  EXPECT_NE(m.find("nanocascade_cascade_max_levels"), std::string::npos);
}

TEST(ServerEndpoints, SessionHeaderAndUserAreAccepted) {
  TestServer ts;
  json body = chat_body("hello", 4);
  body["user"] = "alice";
  auto r = ts.post("/v1/chat/completions", body.dump(), {{"X-Session-Id", "conv-42"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// ---------------------------------------------------------------------------------------------
// Clients that leave: their requests abort and their pages return.

TEST(ServerDisconnect, MidStreamAbortsAndFreesPages) {
  TestServer ts({}, {}, /*delay_us=*/1000);
  json body = chat_body("tell me a long story", 3000, true);
  body["ignore_eos"] = true;
  int chunks = 0;
  std::atomic<int> peak_used{0};
  auto r = post_stream(ts, "/v1/chat/completions", body, [&](const char*, size_t) {
    peak_used = std::max(peak_used.load(), ts.stats().used_pages);
    return ++chunks < 5;  // hang up after a few chunks
  });
  EXPECT_FALSE(r);  // the client cancelled
  EXPECT_GT(peak_used.load(), 0);
  EXPECT_TRUE(ts.wait_idle(10)) << "pages in use: " << ts.stats().used_pages;
  const std::string metrics = ts.client()->Get("/metrics")->body;
  EXPECT_NE(metrics.find("nanocascade_requests_finished_total{finish_reason=\"abort\"} 1"),
            std::string::npos)
      << metrics;
}

// A non-streaming client hangs up while its request generates: it closes (Close), sends a next
// request whose unread bytes sit in front of the hang-up and closes (PipelinedClose), or resets
// the connection right after sending, before the server first looks at it (ResetAtOnce).
enum class HangUp { Close, PipelinedClose, ResetAtOnce };

void hang_up_while_generating(HangUp how) {
  TestServer ts({}, {}, /*delay_us=*/1000);
  json body = completion_body("a long one", 3000);
  body["ignore_eos"] = true;
  const std::string payload = body.dump();
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(payload.size()) + "\r\n\r\n" + payload;
  const int fd = connect_loopback(ts.srv->port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), ssize_t(req.size()));
  if (how == HangUp::ResetAtOnce) {
    const linger reset{1, 0};  // close() sends RST
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  } else {
    // Hang up once the request is generating (a non-streaming response is still far off).
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (ts.stats().num_generated_tokens < 10 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_GE(ts.stats().num_generated_tokens, 10);
    EXPECT_GT(ts.stats().used_pages, 0);
  }
  if (how == HangUp::PipelinedClose) {
    const std::string next = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ASSERT_EQ(::send(fd, next.data(), next.size(), 0), ssize_t(next.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::close(fd);
  // The request ends as an abort (a reset one may not have started yet: wait for its end).
  const std::string aborted = "nanocascade_requests_finished_total{finish_reason=\"abort\"} 1";
  std::string metrics;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  do {
    metrics = ts.client()->Get("/metrics")->body;
  } while (metrics.find(aborted) == std::string::npos && Clock::now() < deadline &&
           (std::this_thread::sleep_for(std::chrono::milliseconds(5)), true));
  EXPECT_NE(metrics.find(aborted), std::string::npos) << metrics;
  EXPECT_TRUE(ts.wait_idle(10)) << "pages in use: " << ts.stats().used_pages;
  EXPECT_LT(ts.stats().num_generated_tokens, 3000);
}

TEST(ServerDisconnect, WaitingNonStreamingClientAborts) {
  hang_up_while_generating(HangUp::Close);
}

TEST(ServerDisconnect, AClientThatPipelinedANextRequestAndLeftAborts) {
  hang_up_while_generating(HangUp::PipelinedClose);
}

TEST(ServerDisconnect, AClientThatResetRightAfterSendingAborts) {
  hang_up_while_generating(HangUp::ResetAtOnce);
}

// ---------------------------------------------------------------------------------------------
// Many concurrent streaming clients; each gets what it would get alone.

TEST(ServerLoad, ConcurrentStreamsEqualAloneAndFreePages) {
  constexpr int kClients = 256;
  constexpr int kMaxTokens = 32;
  EngineSetup es;
  es.max_num_seqs = 128;  // the other half waits in the queue
  server::ServerOptions opts;
  opts.max_waiting = 128;
  TestServer ts(es, opts, /*delay_us=*/200);

  std::vector<json> bodies;
  std::vector<Alone> refs;
  for (int i = 0; i < kClients; ++i) {
    const std::string prompt = "client " + std::to_string(i) + std::string(size_t(i % 7) * 5, '.');
    bodies.push_back(completion_body(prompt, kMaxTokens));
    refs.push_back(complete_alone(prompt, greedy(kMaxTokens)));
  }
  const auto t0 = Clock::now();
  const std::vector<ClientRun> runs = run_streaming_clients(ts.srv->port(), bodies);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_EQ(runs[i].status, 200) << "client " << i;
    EXPECT_EQ(runs[i].text, refs[i].text) << "client " << i;
    EXPECT_EQ(runs[i].finish_reason, refs[i].finish_reason) << "client " << i;
    EXPECT_EQ(runs[i].completion_tokens, refs[i].completion_tokens) << "client " << i;
  }
  EXPECT_TRUE(ts.wait_idle());
  EXPECT_EQ(ts.stats().used_pages, 0);
  print_load("load, fake model", runs, wall);
}

}  // namespace nc
