// The HTTP front end's limits, deadlines and details (issue #19), over raw loopback sockets so
// that the framing is exactly what each test writes: body caps for every framing, the header,
// body and idle deadlines, the connection cap, pipelining, HTTP/1.0 streaming, CORS and the
// bind check. Every wait is bounded; the times asserted are far above what a correct server
// takes and far below the old behaviour (a 30 s read timeout).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "loopback.h"
#include "nanocascade/engine.h"
#include "server/http_checks.h"
#include "server/server.h"

namespace nc {
namespace {

using test::seconds_since;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using LimitServer = test::FakeModelServer;

// A raw client socket on the server's port.
class Raw {
 public:
  explicit Raw(int port) : fd_(test::connect_loopback(port)) {}
  ~Raw() {
    if (fd_ >= 0) ::close(fd_);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  bool ok() const { return fd_ >= 0; }

  bool send(const std::string& s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size());
  }
  // Reads until the peer closes, `stop` appears, or `timeout_s` passes.
  std::string read(double timeout_s, const std::string& stop = "") {
    const auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
    std::string got;
    while (Clock::now() < until) {
      timeval tv{0, 50000};
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closed_ = true;
        break;
      }
      if (n > 0) got.append(buf, size_t(n));
      if (!stop.empty() && got.find(stop) != std::string::npos) break;
    }
    return got;
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
};

server::ServerOptions small_body_opts() {
  server::ServerOptions o;
  o.model_name = "fake-model";
  o.max_body_bytes = 1000;
  return o;
}

const std::string kCompletion =
    R"({"model":"fake-model","prompt":"hello","max_tokens":3,"temperature":0})";

std::string post_head(const std::string& framing, const std::string& version = "HTTP/1.1") {
  return fmt::format(
      "POST /v1/completions {}\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\n{}\r\n",
      version, framing);
}

TEST(HttpLimits, AnnouncedLengthOverTheCapIsRefusedAtOnce) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(c.ok());
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.send(post_head("Content-Length: 1000000000000\r\n")));
  const std::string r = c.read(10);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 413")) << r;
  EXPECT_NE(r.find("1000000000000"), std::string::npos) << r;
  EXPECT_TRUE(c.closed());
  EXPECT_LT(seconds_since(t0), 2.0);
}

TEST(HttpLimits, MalformedOrNegativeContentLengthIsA400AtOnce) {
  LimitServer s(small_body_opts());
  for (const char* cl : {"-5", "abc", "+12", "12, 13", ""}) {
    Raw c(s.port());
    ASSERT_TRUE(c.ok());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(post_head(fmt::format("Content-Length: {}\r\n", cl))));
    const std::string r = c.read(10, "}}");
    EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << "'" << cl << "': " << r;
    EXPECT_LT(seconds_since(t0), 2.0) << cl;
  }
  Raw both(s.port());
  ASSERT_TRUE(both.send(post_head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")));
  EXPECT_TRUE(both.read(10).starts_with("HTTP/1.1 400"));
  Raw gzip(s.port());
  ASSERT_TRUE(gzip.send(post_head("Transfer-Encoding: gzip\r\n")));
  EXPECT_TRUE(gzip.read(10).starts_with("HTTP/1.1 400"));
}

// A request whose method no handler serves gets its 404 or 405 at once, body or not: without a
// Content-Length httplib would read a body until the connection closed, so these waited for the
// body deadline. A DELETE of a stored response is still routed.
TEST(HttpLimits, AnUnservedMethodIsAnsweredAtOnceWithoutAContentLength) {
  LimitServer s(small_body_opts());
  struct Case {
    const char* request_line;
    const char* status;
    const char* allow;
  };
  for (const Case& k :
       {Case{"POST /nowhere", "404", nullptr}, Case{"PUT /v1/completions", "405", "Allow: POST"},
        Case{"POST /v1/models", "405", "Allow: GET"}, Case{"PATCH /health", "405", "Allow: GET"},
        Case{"DELETE /v1/chat/completions", "405", "Allow: POST"}}) {
    Raw c(s.port());
    ASSERT_TRUE(c.ok());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(fmt::format("{} HTTP/1.1\r\nHost: a\r\n\r\n", k.request_line)));
    const std::string r = c.read(10);
    EXPECT_TRUE(r.starts_with(fmt::format("HTTP/1.1 {}", k.status))) << k.request_line << ": " << r;
    if (k.allow) {
      EXPECT_NE(r.find(k.allow), std::string::npos) << k.request_line << ": " << r;
    }
    EXPECT_LT(seconds_since(t0), 2.0) << k.request_line;
    EXPECT_TRUE(c.closed()) << k.request_line;
  }
  // A body to a stored response's DELETE: not read, 405 naming both of its methods.
  Raw with_body(s.port());
  ASSERT_TRUE(with_body.send(
      "DELETE /v1/responses/resp_x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"));
  const std::string wb = with_body.read(10);
  EXPECT_TRUE(wb.starts_with("HTTP/1.1 405")) << wb;
  EXPECT_NE(wb.find("Allow: GET, DELETE"), std::string::npos) << wb;
  Raw del(s.port());
  ASSERT_TRUE(del.send("DELETE /v1/responses/resp_none HTTP/1.1\r\nHost: a\r\n\r\n"));
  const std::string r = del.read(10, "}}");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404")) << r;
  EXPECT_NE(r.find("resp_none"), std::string::npos) << r;
}

std::string chunk(const std::string& data) {
  return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
}

TEST(HttpLimits, ChunkedBodyOverTheCapGets413WithoutReadingTheRest) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(post_head("Transfer-Encoding: chunked\r\n")));
  // 3 chunks of 600 bytes pass the cap of 1000; the terminating chunk never comes.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.send(chunk(std::string(600, ' '))));
  const auto t0 = Clock::now();
  const std::string r = c.read(10);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 413")) << r;
  EXPECT_NE(r.find("request_too_large"), std::string::npos) << r;
  EXPECT_LT(seconds_since(t0), 2.0);
}

TEST(HttpLimits, ChunkedBodyUnderTheCapIsServed) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send(post_head("Transfer-Encoding: chunked\r\nConnection: close\r\n") +
                     chunk(kCompletion.substr(0, 10)) + chunk(kCompletion.substr(10)) +
                     "0\r\n\r\n"));
  const std::string r = c.read(20);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
  EXPECT_NE(r.find("\"text_completion\""), std::string::npos) << r;
}

TEST(HttpLimits, ExpectContinueIsRefusedBeforeTheBodyOrContinued) {
  LimitServer s(small_body_opts());
  {
    Raw c(s.port());
    ASSERT_TRUE(c.send(post_head("Content-Length: 5000\r\nExpect: 100-continue\r\n")));
    const std::string r = c.read(10);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 413")) << r;  // no 100 Continue first
  }
  Raw c(s.port());
  ASSERT_TRUE(c.send(post_head(fmt::format(
      "Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n", kCompletion.size()))));
  const std::string cont = c.read(10, "\r\n\r\n");
  EXPECT_TRUE(cont.starts_with("HTTP/1.1 100 Continue")) << cont;
  ASSERT_TRUE(c.send(kCompletion));
  const std::string r = c.read(20);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
}

TEST(HttpLimits, Http10BodyOverTheCapIsRefused) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(c.send(post_head("Content-Length: 2000\r\n", "HTTP/1.0") + std::string(2000, ' ')));
  const std::string r = c.read(10);
  EXPECT_NE(r.find(" 413 "), std::string::npos) << r;
}

TEST(HttpLimits, TrickledHeaderIsCutOffByItsDeadline) {
  server::ServerOptions o = small_body_opts();
  o.header_timeout_s = 1;  // the per-read timeout stays 30 s
  LimitServer s(o);
  Raw c(s.port());
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\n"));
  const auto t0 = Clock::now();
  std::string r;
  while (seconds_since(t0) < 6 && !c.closed()) {
    c.send("X");  // one byte of a header line every 100 ms
    r += c.read(0.1);
  }
  EXPECT_TRUE(c.closed());
  EXPECT_LT(seconds_since(t0), 3.0);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 408")) << r;
}

TEST(HttpLimits, StalledBodyIsCutOffByItsDeadline) {
  server::ServerOptions o = small_body_opts();
  o.body_timeout_s = 1;
  LimitServer s(o);
  Raw c(s.port());
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.send(post_head("Content-Length: 100\r\n") + "{\"model\""));
  std::string r;
  while (seconds_since(t0) < 6 && !c.closed()) {
    c.send(" ");
    r += c.read(0.1);
  }
  EXPECT_TRUE(c.closed());
  EXPECT_LT(seconds_since(t0), 3.0);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 408")) << r;
}

TEST(HttpLimits, PipelinedRequestsAreAnsweredInOrder) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(
      c.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
             "GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n"
             "GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  const std::string r = c.read(10);
  const size_t a = r.find("HTTP/1.1 200"), b = r.find("\"object\":\"list\""),
               d = r.find("HTTP/1.1 404");
  ASSERT_NE(a, std::string::npos) << r;
  ASSERT_NE(b, std::string::npos) << r;
  ASSERT_NE(d, std::string::npos) << r;
  EXPECT_LT(a, b);
  EXPECT_LT(b, d);
  EXPECT_TRUE(c.closed());
}

// After a request line it cannot parse, the server answers 400 (414 for one too long) once and
// closes: the lines after it are that request's, never requests of their own (a hidden POST
// in them must not run).
TEST(HttpLimits, AnUnparsableRequestLineIsOne400AndTheConnectionCloses) {
  LimitServer s(small_body_opts());
  const std::string hidden = "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (const std::string& line :
       {std::string("POST /v1/completions HTTP/1.1 extra\r\n"),
        std::string("FOO /health HTTP/1.1\r\n"), std::string("GET /health HTTP/1.1\n"),
        "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n"}) {
    Raw c(s.port());
    ASSERT_TRUE(c.ok());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(line + "Host: a\r\n" + hidden));
    const std::string r = c.read(10);
    const std::string head = line.substr(0, 24);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 400") || r.starts_with("HTTP/1.1 414"))
        << head << ": " << r;
    EXPECT_EQ(r.find("HTTP/1.1", 8), std::string::npos) << head << ": more than one answer: " << r;
    EXPECT_EQ(r.find("\"object\":\"list\""), std::string::npos) << head << ": " << r;
    EXPECT_TRUE(c.closed()) << head;
    EXPECT_LT(seconds_since(t0), 5.0) << head;
  }
}

TEST(HttpLimits, Http10StreamHasNoChunkedEncoding) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  const std::string body =
      R"({"model":"fake-model","prompt":"hello","max_tokens":3,"stream":true})";
  ASSERT_TRUE(
      c.send(post_head(fmt::format("Content-Length: {}\r\n", body.size()), "HTTP/1.0") + body));
  const std::string r = c.read(20);
  EXPECT_TRUE(c.closed());
  EXPECT_NE(r.find(" 200 "), std::string::npos) << r;
  EXPECT_EQ(r.find("Transfer-Encoding"), std::string::npos) << r;
  const size_t head_end = r.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_TRUE(r.substr(head_end + 4).starts_with("data: ")) << r;
  EXPECT_NE(r.find("data: [DONE]"), std::string::npos) << r;
}

std::string preflight(const std::string& origin) {
  return fmt::format(
      "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: a\r\nOrigin: {}\r\n"
      "Access-Control-Request-Method: POST\r\n"
      "Access-Control-Request-Headers: authorization, content-type\r\n"
      "Connection: close\r\n\r\n",
      origin);
}

TEST(HttpLimits, CorsIsOffByDefault) {
  LimitServer s(small_body_opts());
  Raw c(s.port());
  ASSERT_TRUE(c.send(preflight("https://a.example")));
  const std::string r = c.read(10);
  EXPECT_EQ(r.find("Access-Control-Allow-Origin"), std::string::npos) << r;
}

TEST(HttpLimits, AllowedOriginsAnswerPreflightsAndMarkResponses) {
  server::ServerOptions o = small_body_opts();
  o.allowed_origins = "https://a.example, https://b.example";
  o.api_key = "k";  // a preflight carries no key
  LimitServer s(o);
  {
    Raw c(s.port());
    ASSERT_TRUE(c.send(preflight("https://b.example")));
    const std::string r = c.read(10);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 204")) << r;
    EXPECT_NE(r.find("Access-Control-Allow-Origin: https://b.example"), std::string::npos) << r;
    EXPECT_NE(r.find("Access-Control-Allow-Headers: authorization, content-type"),
              std::string::npos)
        << r;
  }
  {
    Raw c(s.port());
    ASSERT_TRUE(c.send(preflight("https://evil.example")));
    const std::string r = c.read(10);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 403")) << r;
    EXPECT_EQ(r.find("Access-Control-Allow-Origin"), std::string::npos) << r;
  }
  Raw c(s.port());
  ASSERT_TRUE(
      c.send("GET /health HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r\n"
             "Connection: close\r\n\r\n"));
  const std::string r = c.read(10);
  EXPECT_NE(r.find("Access-Control-Allow-Origin: https://a.example"), std::string::npos) << r;

  server::CorsPolicy any("*");
  EXPECT_EQ(any.allow_origin("https://x.example"), "*");
  EXPECT_THROW(server::CorsPolicy("a.example"), Error);
}

TEST(HttpLimits, ConnectionsBeyondTheCapGet503) {
  server::ServerOptions o = small_body_opts();
  o.max_connections = 4;
  LimitServer s(o);
  std::vector<std::unique_ptr<Raw>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<Raw>(s.port()));
    ASSERT_TRUE(held.back()->ok());
  }
  std::this_thread::sleep_for(milliseconds(200));  // the server accepts them
  Raw over(s.port());
  ASSERT_TRUE(over.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n"));
  const std::string r = over.read(10);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503")) << r;
  EXPECT_NE(r.find("too_many_connections"), std::string::npos) << r;
  EXPECT_TRUE(over.closed());
  held.clear();
  std::this_thread::sleep_for(milliseconds(300));
  Raw after(s.port());
  ASSERT_TRUE(after.send("GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(after.read(10).starts_with("HTTP/1.1 200"));
}

TEST(HttpLimits, HealthStaysResponsiveBesideIdleAndTricklingClients) {
  server::ServerOptions o = small_body_opts();
  o.header_timeout_s = 2;
  LimitServer s(o);
  std::vector<std::unique_ptr<Raw>> idle, trickling;
  for (int i = 0; i < 200; ++i) {  // keep-alive connections idle after one request
    idle.push_back(std::make_unique<Raw>(s.port()));
    ASSERT_TRUE(idle.back()->send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n"));
  }
  for (auto& c : idle) ASSERT_NE(c->read(10, "}").find(" 200 "), std::string::npos);
  for (int i = 0; i < 20; ++i) {
    trickling.push_back(std::make_unique<Raw>(s.port()));
    ASSERT_TRUE(trickling.back()->send("GET /health HTTP/1.1\r\nX-Slow: "));
  }
  double worst = 0;
  for (int i = 0; i < 5; ++i) {
    for (auto& t : trickling) t->send("x");
    const auto t0 = Clock::now();
    Raw probe(s.port());
    ASSERT_TRUE(probe.send("GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    const std::string r = probe.read(10);
    worst = std::max(worst, seconds_since(t0));
    EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
  }
  fmt::print("[http] /health beside 200 idle keep-alive + 20 trickling clients: worst {:.1f} ms\n",
             worst * 1e3);
  EXPECT_LT(worst, 1.0);
}

TEST(HttpLimits, WorkerThreadsStartOnDemand) {
  LimitServer s(small_body_opts());  // up to 4 + 128 + 16 workers
  EXPECT_EQ(s.srv->http_threads_started(), 0);
  for (int i = 0; i < 3; ++i) {
    Raw c(s.port());
    ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    EXPECT_TRUE(c.read(10).starts_with("HTTP/1.1 200"));
  }
  EXPECT_GE(s.srv->http_threads_started(), 1);
  EXPECT_LE(s.srv->http_threads_started(), 3);
}

TEST(HttpLimits, StopDoesNotWaitForSilentClients) {
  auto s = std::make_unique<LimitServer>(small_body_opts());  // header deadline 10 s
  Raw silent(s->port());
  Raw half(s->port());
  ASSERT_TRUE(half.send("GET /health HTTP/1.1\r\n"));
  std::this_thread::sleep_for(milliseconds(200));
  const auto t0 = Clock::now();
  s.reset();
  EXPECT_LT(seconds_since(t0), 2.0);
}

TEST(HttpLimits, BindIsCheckedBeforeTheModelLoads) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  EXPECT_THROW(server::Server::check_can_bind("127.0.0.1", port), Error);
  ::close(fd);
  EXPECT_NO_THROW(server::Server::check_can_bind("127.0.0.1", port));
  EXPECT_NO_THROW(server::Server::check_can_bind("127.0.0.1", 0));
}

// A server that closed connections first leaves them in TIME_WAIT on its port; a new server must
// still bind there at once (a supervisor's restart), and a second live server must not.
TEST(HttpLimits, APortLeftInTimeWaitCanBeBoundAgain) {
  auto s = std::make_unique<LimitServer>(small_body_opts());
  const int port = s->port();
  {
    Raw c(port);
    ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    EXPECT_NE(c.read(5).find("200"), std::string::npos);
    EXPECT_TRUE(c.closed()) << "the server did not close first";
  }
  EXPECT_THROW(server::Server::check_can_bind("127.0.0.1", port), Error) << "a live server";
  s.reset();
  EXPECT_NO_THROW(server::Server::check_can_bind("127.0.0.1", port));
}

}  // namespace
}  // namespace nc
