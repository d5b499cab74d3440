// The HTTP server's errors end to end (tests/server_harness.h): bad requests get the right status
// and an OpenAI-shaped error while the server stays up, and each nc::Error kind raised by the
// engine reaches the client with its status.
#include <gtest/gtest.h>

#include <httplib.h>
#include <future>

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
// Bad input: the right status and an OpenAI-shaped error, and the server stays up.

TEST(ServerErrors, BadRequestsGetOpenAIErrors) {
  TestServer ts;
  const std::string chat = "/v1/chat/completions", comp = "/v1/completions";
  const std::string msgs = R"("messages":[{"role":"user","content":"hi"}])";
  auto c = [&](const std::string& extra) {
    return "{\"model\":\"fake-model\"," + msgs + extra + "}";
  };
  struct Case {
    std::string name, path, body;
    int status;
    std::string content_type = "application/json";
  };
  const std::vector<Case> cases = {
      {"malformed JSON", chat, "{\"model\":", 400},
      {"empty body", chat, "", 400},
      {"not an object", chat, "[1,2]", 400},
      {"trailing garbage", chat, c("") + "xyz", 400},
      {"model not a string", chat, "{\"model\":7," + msgs + "}", 400},
      {"unknown model", chat, "{\"model\":\"gpt-4\"," + msgs + "}", 404},
      {"missing messages", chat, R"({"model":"fake-model"})", 400},
      {"messages not an array", chat, R"({"model":"fake-model","messages":"hi"})", 400},
      {"empty messages", chat, R"({"model":"fake-model","messages":[]})", 400},
      {"message not an object", chat, R"({"model":"fake-model","messages":["hi"]})", 400},
      {"missing role", chat, R"({"model":"fake-model","messages":[{"content":"hi"}]})", 400},
      {"unknown role", chat,
       R"({"model":"fake-model","messages":[{"role":"wizard","content":"hi"}]})", 400},
      {"content a number", chat,
       R"({"model":"fake-model","messages":[{"role":"user","content":5}]})", 400},
      {"image content part", chat,
       R"({"model":"fake-model","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})",
       400},
      {"invalid UTF-8", chat,
       "{\"model\":\"fake-model\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
       400},
      {"lone surrogate", chat,
       R"({"model":"fake-model","messages":[{"role":"user","content":"\ud800"}]})", 400},
      {"temperature a string", chat, c(R"(,"temperature":"hot")"), 400},
      {"temperature negative", chat, c(R"(,"temperature":-1)"), 400},
      {"temperature too high", chat, c(R"(,"temperature":2.5)"), 400},
      {"top_p zero", chat, c(R"(,"top_p":0)"), 400},
      {"top_k fractional", chat, c(R"(,"top_k":1.5)"), 400},
      {"min_p above 1", chat, c(R"(,"min_p":1.5)"), 400},
      {"presence_penalty out of range", chat, c(R"(,"presence_penalty":5)"), 400},
      {"seed a string", chat, c(R"(,"seed":"x")"), 400},
      {"max_tokens negative", chat, c(R"(,"max_tokens":-5)"), 400},
      {"max_tokens zero", chat, c(R"(,"max_tokens":0)"), 400},
      {"max_tokens fractional", chat, c(R"(,"max_tokens":2.5)"), 400},
      {"max_tokens 1e30", chat, c(R"(,"max_tokens":1e30)"), 400},
      {"number past a double", chat, c(R"(,"temperature":1e400)"), 400},
      {"max_tokens past uint64", chat, c(R"(,"max_tokens":99999999999999999999999)"), 400},
      {"max_tokens past the context", chat, c(R"(,"max_tokens":1000000)"), 400},
      {"min_tokens over max_tokens", chat, c(R"(,"max_tokens":4,"min_tokens":9)"), 400},
      {"n above --max-n", chat, c(R"(,"n":17)"), 400},
      {"top_logprobs above 20", chat, c(R"(,"logprobs":true,"top_logprobs":21)"), 400},
      {"top_logprobs without logprobs", chat, c(R"(,"top_logprobs":2)"), 400},
      {"logit_bias key not a token id", chat, c(R"(,"logit_bias":{"a":1})"), 400},
      {"logit_bias value above 100", chat, c(R"(,"logit_bias":{"3":100.5})"), 400},
      {"logit_bias id outside the vocabulary", chat, c(R"(,"logit_bias":{"99999":1})"), 400},
      {"tool_choice names no tool", chat,
       c(R"(,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}})"),
       400},
      {"tool without a name", chat, c(R"(,"tools":[{"type":"function","function":{}}])"), 400},
      {"stop a number", chat, c(R"(,"stop":5)"), 400},
      {"empty stop string", chat, c(R"(,"stop":[""])"), 400},
      {"stream not a bool", chat, c(R"(,"stream":"yes")"), 400},
      {"stream_options without stream", chat, c(R"(,"stream_options":{"include_usage":true})"),
       400},
      {"deep nesting", chat,
       "{\"model\":\"fake-model\",\"x\":" + std::string(5000, '[') + std::string(5000, ']') + "}",
       400},
      {"missing prompt", comp, R"({"model":"fake-model"})", 400},
      {"empty prompt", comp, R"({"model":"fake-model","prompt":""})", 400},
      {"empty token list", comp, R"({"model":"fake-model","prompt":[]})", 400},
      {"negative token id", comp, R"({"model":"fake-model","prompt":[1,-1]})", 400},
      {"token id outside the vocabulary", comp,
       R"({"model":"fake-model","prompt":[1,99999],"max_tokens":2})", 400},
      {"streamed batch of prompts", comp,
       R"({"model":"fake-model","prompt":["a","b"],"stream":true})", 400},
      {"empty prompt in a batch", comp, R"({"model":"fake-model","prompt":["a",[]]})", 400},
      {"prompt over the context", comp,
       R"({"model":"fake-model","prompt":")" + std::string(5000, 'a') + "\"}", 400},
      {"logprobs above 5", comp, R"({"model":"fake-model","prompt":"a","logprobs":6})", 400},
      {"best_of below n", comp, R"({"model":"fake-model","prompt":"a","n":3,"best_of":2})", 400},
      {"best_of streamed", comp,
       R"({"model":"fake-model","prompt":"a","n":1,"best_of":2,"stream":true})", 400},
      {"wrong content type", chat, c(""), 415, "text/plain"},
      {"form content type", comp, "prompt=hi", 415, "application/x-www-form-urlencoded"},
  };
  ASSERT_GE(cases.size(), 30u);
  for (const Case& k : cases) {
    expect_openai_error(ts.post(k.path, k.body, {}, k.content_type), k.status, k.name);
  }
  // Routes and methods.
  expect_openai_error(ts.client()->Get("/v1/chat/completions"), 405, "GET on a POST route");
  expect_openai_error(ts.client()->Delete("/v1/completions"), 405, "DELETE on a POST route");
  expect_openai_error(ts.client()->Post("/v1/models", "{}", "application/json"), 405,
                      "POST on /v1/models");
  expect_openai_error(ts.client()->Get("/no/such/route"), 404, "unknown route");
  expect_openai_error(ts.client()->Post("/v1/embeddings", "{}", "application/json"), 404,
                      "unsupported endpoint");
  EXPECT_EQ(ts.client()->Get("/v1/chat/completions")->get_header_value("Allow"), "POST");

  // Still serving, nothing leaked.
  auto h = ts.client()->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto ok = ts.post("/v1/chat/completions", chat_body("still there?", 3));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_TRUE(ts.wait_idle());
  auto m = ts.client()->Get("/metrics");
  EXPECT_EQ(m->body.find("code=\"500\""), std::string::npos) << "a client mistake gave a 500";
}

// Each ErrorKind has its status, type and code (the table in server/api_error.h).
TEST(ServerErrorKinds, EachKindMapsToItsStatus) {
  struct Want {
    ErrorKind kind;
    int status;
    std::string type, code;
  };
  const std::vector<Want> wants = {
      {ErrorKind::InvalidArgument, 400, "invalid_request_error", ""},
      {ErrorKind::ContextLength, 400, "invalid_request_error", "context_length_exceeded"},
      {ErrorKind::Unsupported, 400, "invalid_request_error", ""},
      {ErrorKind::NotFound, 404, "invalid_request_error", ""},
      {ErrorKind::Overloaded, 429, "rate_limit_error", "server_busy"},
      {ErrorKind::Internal, 500, "server_error", ""},
  };
  for (const Want& w : wants) {
    const char* name = error_kind_name(w.kind);
    EXPECT_EQ(server::http_status(w.kind), w.status) << name;
    const server::ApiError e = server::api_error_from(Error("boom", w.kind), "prompt");
    EXPECT_EQ(e.status(), w.status) << name;
    EXPECT_EQ(e.type(), w.type) << name;
    EXPECT_EQ(e.code(), w.code) << name;
    const std::string msg = e.what();
    EXPECT_NE(msg.find("boom"), std::string::npos) << name;
    // The param goes with client errors only; an internal error names no field.
    EXPECT_EQ(e.param(), w.kind == ErrorKind::Internal ? "" : "prompt") << name;
  }
  EXPECT_EQ(std::string(server::api_error_from(Error("x")).what()), "internal error: x");
}

// The kind of the error f throws ("no error" when it throws none).
template <typename F>
std::string kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return error_kind_name(e.kind());
  }
  return "no error";
}

// The engine tags what a caller can get wrong, so that the server needs no checks of its own.
TEST(ServerErrorKinds, EngineTagsRequestErrors) {
  EngineSetup es;
  es.max_model_len = 64;
  auto engine = make_engine(es);
  SamplingParams sp = greedy(4);
  EXPECT_EQ(kind_of([&] { engine->add_request(std::vector<int32_t>{}, sp); }), "invalid_argument");
  EXPECT_EQ(kind_of([&] { engine->add_request(std::string(), sp); }), "invalid_argument");
  EXPECT_EQ(kind_of([&] {
              engine->add_request(std::vector<int32_t>{1, kVocab}, sp);
            }),
            "invalid_argument");
  EXPECT_EQ(kind_of([&] { engine->add_request(std::vector<int32_t>(64, 1), sp); }),
            "context_length");
  EXPECT_EQ(kind_of([&] { engine->add_request(std::vector<int32_t>(62, 1), sp); }),
            "context_length");
  EXPECT_EQ(kind_of([&] { engine->set_session(12345, "s"); }), "not_found");
  SamplingParams hot = sp;
  hot.temperature = -1;
  EXPECT_EQ(kind_of([&] { hot.validate(); }), "invalid_argument");
  EXPECT_EQ(kind_of([&] { engine->add_request(std::vector<int32_t>{1}, hot); }),
            "invalid_argument");
  EXPECT_EQ(kind_of([&] { engine->add_chat_request({{"wizard", "hi"}}, sp); }), "invalid_argument");
  EXPECT_EQ(kind_of([&] { engine->add_chat_request({}, sp); }), "invalid_argument");
  // A model without a tokenizer has no chat template: a valid request it cannot serve.
  EngineConfig cfg;
  cfg.kv_cache_memory = "1048576";
  Engine bare(cfg, std::make_unique<fake::FakeModel>(kVocab, 256), make_number_codec(kVocab));
  EXPECT_EQ(kind_of([&] { bare.add_chat_request({{"user", "hi"}}, sp); }), "unsupported");
  EXPECT_EQ(kind_of([&] { bare.add_request(std::string("1 2 x"), sp); }), "invalid_argument");
  EXPECT_FALSE(engine->has_unfinished());
}

// An nc::Error thrown on the engine thread while a request is admitted reaches the client with
// the status of its kind, without the server checking the request itself.
TEST(ServerErrorKinds, EngineErrorOfEachKindReachesTheClient) {
  EngineSetup es;
  es.raising_codec = true;
  TestServer ts(es);
  for (ErrorKind k : {ErrorKind::InvalidArgument, ErrorKind::ContextLength, ErrorKind::Unsupported,
                      ErrorKind::NotFound, ErrorKind::Overloaded, ErrorKind::Internal}) {
    const std::string name = error_kind_name(k);
    const json body = {{"model", kModel}, {"prompt", "raise:" + name}, {"max_tokens", 2}};
    auto r = ts.post("/v1/completions", body);
    expect_openai_error(r, server::http_status(k), name);
    const json e = json::parse(r->body)["error"];
    EXPECT_NE(e["message"].get<std::string>().find("raised raise:" + name), std::string::npos)
        << r->body;
    EXPECT_EQ(e["type"], server::api_error_from(Error("", k)).type()) << name;
  }
  // The engine's own checks, tagged with their kinds.
  auto vocab = ts.post("/v1/completions", json{{"model", kModel}, {"prompt", {1, kVocab}}});
  expect_openai_error(vocab, 400, "token id outside the vocabulary");
  EXPECT_TRUE(json::parse(vocab->body)["error"]["code"].is_null()) << vocab->body;
  auto ctx =
      ts.post("/v1/completions", json{{"model", kModel}, {"prompt", std::string(5000, 'a')}});
  expect_openai_error(ctx, 400, "prompt over the context");
  const json ce = json::parse(ctx->body)["error"];
  EXPECT_EQ(ce["code"], "context_length_exceeded") << ctx->body;
  EXPECT_EQ(ce["param"], "prompt") << ctx->body;
  auto chat_ctx = ts.post("/v1/chat/completions", chat_body(std::string(5000, 'a'), 4));
  expect_openai_error(chat_ctx, 400, "messages over the context");
  EXPECT_EQ(json::parse(chat_ctx->body)["error"]["param"], "messages") << chat_ctx->body;
  auto max_tok =
      ts.post("/v1/completions", json{{"model", kModel}, {"prompt", "abc"}, {"max_tokens", 4095}});
  expect_openai_error(max_tok, 400, "prompt + max_tokens over the context");
  EXPECT_EQ(json::parse(max_tok->body)["error"]["param"], "max_tokens") << max_tok->body;
  EXPECT_EQ(json::parse(max_tok->body)["error"]["code"], "context_length_exceeded");
  // Still serving.
  auto ok = ts.post("/v1/chat/completions", chat_body("still there?", 3));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_TRUE(ts.wait_idle());
}

// A grammar that cannot be completed is the request's fault: 400 saying so (whole), an error event
// of type invalid_request_error (streamed); not 503, the server's fault.
TEST(ServerErrorKinds, AGrammarWithNoWayOnIsA400) {
  TestServer ts;
  json body = {{"model", kModel},
               {"prompt", "g"},
               {"max_tokens", 20},
               {"guided_grammar", "root ::= \"ab\" x\nx ::= x \"b\""}};
  auto r = ts.post("/v1/completions", body);
  expect_openai_error(r, 400, "a grammar with no way on");
  EXPECT_NE(r->body.find("nothing can follow"), std::string::npos) << r->body;
  body["stream"] = true;
  auto s = ts.post("/v1/completions", body);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  EXPECT_NE(s->body.find("invalid_request_error"), std::string::npos) << s->body;
  EXPECT_NE(s->body.find("nothing can follow"), std::string::npos) << s->body;
  EXPECT_TRUE(ts.wait_idle());
}

// More grammars compiling at once than the cache allows is the server's load: 429 server_busy
// (clients retry it), never a 400 blaming the request.
TEST(ServerErrorKinds, TooManyGrammarsCompilingIsA429) {
  EngineSetup es;
  es.grammar_timeout_s = 1e-6;  // each request returns at once; its compilation goes on
  TestServer ts(es);
  std::vector<std::future<std::pair<int, std::string>>> replies;
  for (int i = 0; i < 12; ++i) {  // at once: more compilations than the 4 slots
    replies.push_back(std::async(std::launch::async, [&ts, i] {
      const json body = {{"model", kModel},
                         {"prompt", "g"},
                         {"max_tokens", 2},
                         {"guided_regex", "([ab]c?){" + std::to_string(20000 + i) + "}"}};
      auto r = ts.post("/v1/completions", body);
      return r ? std::pair{r->status, r->body} : std::pair{0, std::string()};
    }));
  }
  int busy = 0, timed_out = 0;
  for (auto& f : replies) {
    const auto [status, body] = f.get();
    ASSERT_NE(status, 0);
    const json e = json::parse(body).value("error", json::object());  // 200: compiled in time
    if (e.value("message", "").find("still compiling") != std::string::npos) {
      EXPECT_EQ(status, 429) << body;
      EXPECT_EQ(e["type"], "rate_limit_error") << body;
      ++busy;
    } else {
      timed_out += status == 400;
    }
  }
  if (busy == 0 && timed_out < 5) GTEST_SKIP() << "compiled too fast to overlap";
  EXPECT_GT(busy, 0);
}

TEST(ServerErrors, MalformedHttpGetsAnError) {
  TestServer ts;
  const int fd = connect_loopback(ts.srv->port());
  ASSERT_GE(fd, 0);
  const std::string junk = "THIS IS NOT HTTP\r\n\r\n";
  ASSERT_EQ(::send(fd, junk.data(), junk.size(), 0), ssize_t(junk.size()));
  // Read the status line, the headers and Content-Length bytes of body.
  char buf[4096];
  std::string resp;
  size_t want = std::string::npos;
  while (resp.size() < want) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    resp.append(buf, size_t(n));
    const size_t head_end = resp.find("\r\n\r\n");
    const size_t cl = resp.find("Content-Length: ");
    if (head_end != std::string::npos && cl != std::string::npos && cl < head_end) {
      want = head_end + 4 + std::stoul(resp.substr(cl + 16));
    }
  }
  ::close(fd);
  EXPECT_EQ(resp.rfind("HTTP/1.1 400", 0), 0u) << resp;
  EXPECT_NE(resp.find("\"error\""), std::string::npos) << resp;
  EXPECT_EQ(ts.client()->Get("/health")->status, 200);
}

TEST(ServerErrors, ApiKey) {
  server::ServerOptions opts;
  opts.api_key = "sk-test-123";
  TestServer ts({}, opts);
  const json body = chat_body("hi", 2);
  auto r = ts.post("/v1/chat/completions", body.dump());
  expect_openai_error(r, 401, "no key");
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  expect_openai_error(
      ts.post("/v1/chat/completions", body.dump(), {{"Authorization", "Bearer sk-test-124"}}), 401,
      "wrong key");
  expect_openai_error(
      ts.post("/v1/chat/completions", body.dump(), {{"Authorization", "Basic sk-test-123"}}), 401,
      "wrong scheme");
  expect_openai_error(ts.client()->Get("/v1/models"), 401, "models without a key");
  r = ts.post("/v1/chat/completions", body.dump(), {{"Authorization", "Bearer sk-test-123"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(ts.client()->Get("/health")->status, 200);  // health and metrics stay open
}

TEST(ServerErrors, OversizedBodyIs413) {
  server::ServerOptions opts;
  opts.max_body_bytes = 2048;
  TestServer ts({}, opts);
  expect_openai_error(ts.post("/v1/completions", completion_body(std::string(4096, 'x'), 2)), 413,
                      "body over the cap");
  auto ok = ts.post("/v1/completions", completion_body("small", 2));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST(ServerErrors, FullQueueIs429WithRetryAfter) {
  EngineSetup es;
  es.max_num_seqs = 1;
  server::ServerOptions opts;
  opts.max_waiting = 1;
  TestServer ts(es, opts, /*delay_us=*/2000);
  // Two long streams fill the engine (1 running) and the queue (1 waiting).
  std::atomic<bool> hang_up{false};
  std::vector<std::thread> streams;
  for (int i = 0; i < 2; ++i) {
    streams.emplace_back([&, i] {
      json body = completion_body("long " + std::to_string(i), 3000, true);
      body["ignore_eos"] = true;
      post_stream(ts, "/v1/completions", body,
                  [&](const char*, size_t) { return !hang_up.load(); });
    });
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (ts.srv->loop().num_in_flight() < 2 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(ts.srv->loop().num_in_flight(), 2);
  auto r = ts.post("/v1/completions", completion_body("one more", 2));
  expect_openai_error(r, 429, "queue full");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  hang_up = true;
  for (auto& t : streams) t.join();
  EXPECT_TRUE(ts.wait_idle());
  auto ok = ts.post("/v1/completions", completion_body("now there is room", 2));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

}  // namespace nc
