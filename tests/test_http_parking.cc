// The parking reactor (src/server/connection_reactor.h) over raw loopback sockets: a connection
// between requests holds no worker, its deadlines hold while it is parked (idle: closed; a header
// begun: 408 from its first byte), the bytes it buffered there reach the worker (a pipelined
// request split across a parking), and the server's stop closes what is parked at once.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loopback.h"
#include "server/server.h"

namespace nc {
namespace test_http_parking {

using test::seconds_since;
using test::send_all;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Reads for up to `timeout_s`, until `want` occurrences of `stop` came or the peer closed
// (`closed` then set).
std::string read_for(int fd, double timeout_s, const std::string& stop, int want, bool* closed) {
  std::string got;
  const auto until = Clock::now() + std::chrono::duration<double>(timeout_s);
  timeval tv{0, 20000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  while (Clock::now() < until) {
    int seen = 0;
    for (size_t p = got.find(stop); p != std::string::npos; p = got.find(stop, p + 1)) ++seen;
    if (!stop.empty() && seen >= want) break;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      if (closed) *closed = true;
      break;
    }
    if (n > 0) got.append(buf, size_t(n));
  }
  return got;
}

const std::string kHealth = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";

server::ServerOptions opts() {
  server::ServerOptions o;
  o.model_name = "fake-model";
  return o;
}

TEST(HttpParking, IdleKeepAliveConnectionIsClosedAtItsDeadlineNotBefore) {
  server::ServerOptions o = opts();
  o.keep_alive_timeout_s = 1;
  test::FakeModelServer s(o);
  const int fd = test::connect_loopback(s.port());
  ASSERT_TRUE(send_all(fd, kHealth));
  bool closed = false;
  ASSERT_NE(read_for(fd, 5, "}", 1, &closed).find(" 200 "), std::string::npos);
  const auto answered = Clock::now();
  read_for(fd, 0.6, "", 0, &closed);
  EXPECT_FALSE(closed) << "closed before its idle deadline";
  EXPECT_EQ(s.srv->parked_connections(), 1);
  read_for(fd, 3, "", 0, &closed);
  EXPECT_TRUE(closed);
  EXPECT_GT(seconds_since(answered), 0.9);
  EXPECT_LT(seconds_since(answered), 2.0);
  EXPECT_EQ(s.srv->parked_connections(), 0);
  ::close(fd);
}

TEST(HttpParking, HeaderAfterAKeepAliveRequestIsDueFromItsFirstByte) {
  server::ServerOptions o = opts();
  o.header_timeout_s = 1;
  o.keep_alive_timeout_s = 30;
  test::FakeModelServer s(o);
  const int fd = test::connect_loopback(s.port());
  ASSERT_TRUE(send_all(fd, kHealth));
  bool closed = false;
  ASSERT_NE(read_for(fd, 5, "}", 1, &closed).find(" 200 "), std::string::npos);
  std::this_thread::sleep_for(milliseconds(1500));  // idle longer than a header may take
  ASSERT_TRUE(send_all(fd, "GET /health HTTP/1.1\r\n"));
  const auto first_byte = Clock::now();
  std::string r;
  while (!closed && seconds_since(first_byte) < 5) {
    send_all(fd, "X");  // one byte of a header line every 100 ms, never finished
    r += read_for(fd, 0.1, "", 0, &closed);
  }
  EXPECT_TRUE(closed);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 408")) << r;
  EXPECT_GT(seconds_since(first_byte), 0.9);
  EXPECT_LT(seconds_since(first_byte), 2.5);
  ::close(fd);
}

TEST(HttpParking, RequestSplitAcrossAParkingIsAnsweredInOrder) {
  test::FakeModelServer s(opts());
  const int fd = test::connect_loopback(s.port());
  // The first request whole and half of the second: the worker answers the first, parks the
  // connection with the half it read ahead, and the reactor completes it.
  ASSERT_TRUE(send_all(fd, kHealth + "GET /v1/models HTTP/1.1\r\nHo"));
  bool closed = false;
  std::string r = read_for(fd, 5, "HTTP/1.1 200", 1, &closed);
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_TRUE(send_all(fd, "st: a\r\nConnection: close\r\n\r\n"));
  r += read_for(fd, 5, "", 0, &closed);
  const size_t health = r.find(R"("status")"), models = r.find("fake-model");
  ASSERT_NE(health, std::string::npos) << r;
  ASSERT_NE(models, std::string::npos) << r;
  EXPECT_LT(health, models) << r;
  EXPECT_TRUE(closed);
  ::close(fd);
}

TEST(HttpParking, SilentAndTricklingConnectionsHoldNoWorker) {
  server::ServerOptions o = opts();
  o.http_threads = 2;
  test::FakeModelServer s(o);
  std::vector<int> held;
  for (int i = 0; i < 100; ++i) held.push_back(test::connect_loopback(s.port()));
  for (int i = 0; i < 20; ++i) {
    held.push_back(test::connect_loopback(s.port()));
    send_all(held.back(), "GET /health HTTP/1.1\r\nX-Slow: ");
  }
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(s.srv->parked_connections(), 120);
  for (int i = 0; i < 5; ++i) {
    const int fd = test::connect_loopback(s.port());
    ASSERT_TRUE(send_all(fd, "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    bool closed = false;
    const auto t0 = Clock::now();
    EXPECT_TRUE(read_for(fd, 5, "", 0, &closed).starts_with("HTTP/1.1 200"));
    EXPECT_LT(seconds_since(t0), 2.0);  // a server waiting on the parked ones: 5 s or more
    ::close(fd);
  }
  EXPECT_LE(s.srv->http_threads_started(), 2);
  for (int fd : held) ::close(fd);
}

TEST(HttpParking, StopClosesParkedConnectionsAtOnce) {
  auto s = std::make_unique<test::FakeModelServer>(opts());  // deadlines of 5 and 10 s
  std::vector<int> held;
  for (int i = 0; i < 10; ++i) held.push_back(test::connect_loopback(s->port()));
  const int keep_alive = test::connect_loopback(s->port());
  ASSERT_TRUE(send_all(keep_alive, kHealth));
  bool closed = false;
  ASSERT_NE(read_for(keep_alive, 5, "}", 1, &closed).find(" 200 "), std::string::npos);
  held.push_back(keep_alive);
  std::this_thread::sleep_for(milliseconds(200));
  const auto t0 = Clock::now();
  s.reset();
  EXPECT_LT(seconds_since(t0), 1.0);
  for (int fd : held) {
    bool gone = false;
    read_for(fd, 1, "", 0, &gone);
    EXPECT_TRUE(gone);
    ::close(fd);
  }
}

}  // namespace test_http_parking
}  // namespace nc
