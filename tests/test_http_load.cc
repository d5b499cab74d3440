// Issue #19's check, bounded, over raw loopback sockets: 1,000 idle connections plus 50 clients
// trickling a header one byte a second do not delay /health or a short chat completion by more
// than 100 ms at the median (none waits 1 s), and all of them stay open under the default
// connection cap, held by the parking reactor without a thread each (a request sent later on each
// idle one is answered); a streaming client that stops reading does not block others, nor the
// server's stop; silent connections beyond the cap do not delay the 503 of others. The fake model
// answers at once, so the times measured are the front end's.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "loopback.h"
#include "nanocascade/engine.h"
#include "server/server.h"

namespace nc {
namespace {

using test::send_all;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// A server over the fake model that answers to its model name "fake-model".
std::unique_ptr<test::FakeModelServer> load_server(server::ServerOptions opts) {
  if (opts.model_name.empty()) opts.model_name = "fake-model";
  return std::make_unique<test::FakeModelServer>(opts);
}

// One request on a fresh connection ("Connection: close"); the whole response, read for up to
// `timeout_s`.
std::string round_trip(int port, const std::string& request, double timeout_s = 5) {
  const int fd = test::connect_loopback(port);
  if (fd < 0 || !send_all(fd, request)) return "";
  timeval tv{0, 50000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  const auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  while (Clock::now() < until) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (n > 0) got.append(buf, size_t(n));
  }
  ::close(fd);
  return got;
}

std::string post(const std::string& path, const std::string& body) {
  return fmt::format(
      "POST {} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n{}",
      path, body.size(), body);
}

const std::string kHealth = "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
std::string chat_request(const std::string& model, int max_tokens, bool stream) {
  return post("/v1/chat/completions",
              fmt::format(R"({{"model":"{}","messages":[{{"role":"user","content":"hi"}}],)"
                          R"("max_tokens":{},"temperature":0,"ignore_eos":true,"stream":{}}})",
                          model, max_tokens, stream));
}

// Raises the soft open-file limit to `need`; false when the hard limit is below it.
bool raise_nofile(rlim_t need, rlim_t& hard) {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  hard = r.rlim_max;
  if (r.rlim_cur >= need) return true;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < need) return false;
  r.rlim_cur = need;
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
}

// Times /health and a short chat completion, each on a fresh connection, as often as run() is
// called. The checks compare medians: on a shared CI machine (two test shards, ASan) a single
// round trip now and then takes ~100 ms more for reasons outside the server, while a server that
// let a slow client hold a worker would delay every probe, by up to the trickle's 1 s interval.
struct Probe {
  explicit Probe(std::string model_name = "fake-model") : model(std::move(model_name)) {}
  std::string model;
  std::vector<double> health_ms, chat_ms;
  void run(int port) {
    auto t0 = Clock::now();
    const std::string h = round_trip(port, kHealth);
    health_ms.push_back(ms_since(t0));
    EXPECT_TRUE(h.starts_with("HTTP/1.1 200")) << h;
    t0 = Clock::now();
    const std::string c = round_trip(port, chat_request(model, 4, false));
    chat_ms.push_back(ms_since(t0));
    EXPECT_TRUE(c.starts_with("HTTP/1.1 200")) << c;
    EXPECT_NE(c.find("chat.completion"), std::string::npos) << c;
  }
  void run(int port, int times) {
    for (int i = 0; i < times; ++i) run(port);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double worst(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// `loaded` is not slower than `alone` by more than 100 ms at the median, and no probe waited
// as long as the trickling clients' 1 s between bytes.
void expect_not_delayed(const Probe& alone, const Probe& loaded, const char* beside) {
  fmt::print(
      "[http] {}: /health median {:.1f} ms worst {:.1f} (alone {:.1f} / {:.1f}), chat median "
      "{:.1f} worst {:.1f} (alone {:.1f} / {:.1f})\n",
      beside, median(loaded.health_ms), worst(loaded.health_ms), median(alone.health_ms),
      worst(alone.health_ms), median(loaded.chat_ms), worst(loaded.chat_ms), median(alone.chat_ms),
      worst(alone.chat_ms));
  EXPECT_LT(median(loaded.health_ms), median(alone.health_ms) + 100) << beside;
  EXPECT_LT(median(loaded.chat_ms), median(alone.chat_ms) + 100) << beside;
  EXPECT_LT(worst(loaded.health_ms), 1000) << beside;
  EXPECT_LT(worst(loaded.chat_ms), 1000) << beside;
}

TEST(HttpLoad, IdleAndTricklingClientsDoNotDelayHealthOrChat) {
  constexpr int kIdle = 1000, kTrickling = 50;
  rlim_t hard = 0;
  if (!raise_nofile(2 * (kIdle + kTrickling) + 256, hard)) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << hard << " is below "
                 << 2 * (kIdle + kTrickling) + 256 << " (client and server ends of "
                 << kIdle + kTrickling << " connections)";
  }
  server::ServerOptions o;  // the default cap: 7/8 of the fd limit (raised above), >= 2,000
  auto s = load_server(o);
  const int port = s->port();
  Probe before;
  before.run(port, 5);
  std::vector<int> idle, trickling;
  for (int i = 0; i < kIdle; ++i) idle.push_back(test::connect_loopback(port));
  for (int i = 0; i < kTrickling; ++i) {
    trickling.push_back(test::connect_loopback(port));
    send_all(trickling.back(), "GET /health HTTP/1.1\r\nX-Slow: ");
  }
  Probe under_load;
  for (int second = 0; second < 5; ++second) {
    const auto tick = Clock::now();
    for (int fd : trickling) send_all(fd, "x");
    under_load.run(port, 4);
    std::this_thread::sleep_until(tick + milliseconds(1000));
  }
  int idle_open = 0;
  for (int fd : idle) {
    char c;
    if (fd >= 0 && ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) ++idle_open;
  }
  const int parked = s->srv->parked_connections(), threads = s->srv->http_threads_started();
  // Each idle connection, silent since its accept (~6 s ago; the header deadline is 10 s), is
  // still served: a request sent on each now is answered.
  for (int fd : idle) send_all(fd, kHealth);
  int answered = 0;
  for (int fd : idle) {
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char head[12];
    if (::recv(fd, head, sizeof(head), MSG_WAITALL) == ssize_t(sizeof(head)) &&
        std::string(head, sizeof(head)) == "HTTP/1.1 200") {
      ++answered;
    }
  }
  expect_not_delayed(before, under_load, "beside 1000 idle + 50 trickling connections");
  fmt::print(
      "[http] {} idle connections still open, {} parked, {} worker threads; {} idle ones "
      "answered a later request\n",
      idle_open, parked, threads, answered);
  EXPECT_EQ(idle_open, kIdle);
  EXPECT_GE(parked, kIdle + kTrickling);  // the idle and the trickling ones, no thread each
  EXPECT_LE(threads, 8);  // the probes, one at a time: accepting and parking starts no worker
  EXPECT_EQ(answered, kIdle);
  for (int fd : idle) ::close(fd);
  for (int fd : trickling) ::close(fd);
}

TEST(HttpLoad, SilentConnectionsBeyondTheCapDoNotDelayThe503) {
  server::ServerOptions o;
  o.max_connections = 8;
  auto s = load_server(o);
  const int port = s->port();
  std::vector<int> silent;
  for (int i = 0; i < 300; ++i)
    silent.push_back(test::connect_loopback(port));  // 8 held, 292 beyond
  std::this_thread::sleep_for(milliseconds(300));    // the server takes them
  const auto t0 = Clock::now();
  const std::string r = round_trip(port, kHealth);
  const double took = ms_since(t0);
  fmt::print("[http] 503 beside 292 silent connections beyond the cap: {:.1f} ms\n", took);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503")) << r;
  EXPECT_NE(r.find("too_many_connections"), std::string::npos) << r;
  EXPECT_LT(took, 500);
  for (int fd : silent) ::close(fd);
}

TEST(HttpLoad, StreamingClientThatStopsReadingBlocksNeitherOthersNorStop) {
  // Each chunk names the model: a long name makes the stream (~7 MB) outgrow the socket
  // buffers (4 MB at most by default), so the server's writes stall.
  server::ServerOptions o;
  o.model_name = std::string(8000, 'm');
  auto s = load_server(o);
  const int port = s->port();
  Probe before(o.model_name);
  before.run(port, 5);
  const int stalled = test::connect_loopback(port, /*rcvbuf=*/1024);
  ASSERT_GE(stalled, 0);
  ASSERT_TRUE(send_all(stalled, chat_request(o.model_name, 900, true)));
  std::this_thread::sleep_for(milliseconds(1000));  // its socket buffers fill; it reads nothing
  Probe beside(o.model_name);
  beside.run(port, 5);
  expect_not_delayed(before, beside, "beside a stalled stream");
  const auto t0 = Clock::now();
  s.reset();  // stop() must not wait for the stalled reader's write timeout (30 s)
  EXPECT_LT(ms_since(t0), 2000);
  ::close(stalled);
}

}  // namespace
}  // namespace nc
