// Tensor parallelism's communicator between processes, over TCP (dist/socket_group.h).
#include "dist/socket_group.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace nc {
namespace {

// Every message: this header, then `bytes` bytes of payload.
enum class Op : uint32_t { Hello = 1, AllReduce, AllGather, Broadcast, Abort };
constexpr uint32_t kMagic = 0x4e435450;  // "NCTP"
struct Header {
  uint32_t magic = kMagic;
  Op op = Op::Hello;
  int64_t bytes = 0;
};
struct Hello {
  int32_t rank = 0, size = 0;
};
// How long a connecting rank has to name itself.
constexpr std::chrono::milliseconds kHelloTime{10000};
// How long a failing rank tries to tell the others why.
constexpr std::chrono::milliseconds kAbortSendTime{1000};
// The longest reason a rank that cannot join sends (its error text, cut there).
constexpr int64_t kMaxJoinFailureBytes = 4096;

const char* socket_op_name(Op op) {
  switch (op) {
    case Op::Hello:
      return "set-up";
    case Op::AllReduce:
      return "all_reduce_sum";
    case Op::AllGather:
      return "all_gather";
    case Op::Broadcast:
      return "broadcast";
    case Op::Abort:
      return "abort";
  }
  return "an unknown message";
}

void send_msg(TcpLink& link, Op op, const void* data, int64_t bytes, Deadline d) {
  const Header h{kMagic, op, bytes};
  link.send(&h, sizeof(h), d, socket_op_name(op));
  if (bytes > 0) link.send(data, size_t(bytes), d, socket_op_name(op));
}

// Best effort: a rank that is gone already needs no telling.
void try_send_abort(TcpLink& link, const std::string& why, Deadline d) {
  try {
    send_msg(link, Op::Abort, why.data(), int64_t(why.size()), d);
  } catch (const Error&) {  // that rank is gone already: nothing to tell
  }
}

// Receives the next header, which must be `op` (with `bytes` bytes unless bytes < 0); an abort
// from the peer becomes an error carrying its reason. Returns the payload size.
int64_t expect(TcpLink& link, Op op, int64_t bytes, Deadline d) {
  Header h;
  link.recv(&h, sizeof(h), d, socket_op_name(op));
  NC_CHECK(h.magic == kMagic, "tensor parallel: {} sent a message that is not ours (magic {:#x})",
           link.peer(), h.magic);
  if (h.op == Op::Abort) {
    std::string why(size_t(std::clamp<int64_t>(h.bytes, 0, 1 << 20)), '\0');
    link.recv(why.data(), why.size(), d, "abort");
    fail("tensor parallel: {} stopped the group: {}", link.peer(), why);
  }
  NC_CHECK(h.op == op, "tensor parallel: this rank called {} where {} called {}",
           socket_op_name(op), link.peer(), socket_op_name(h.op));
  NC_CHECK(bytes < 0 || h.bytes == bytes, "tensor parallel {}: this rank has {} bytes, {} has {}",
           socket_op_name(op), bytes, link.peer(), h.bytes);
  return h.bytes;
}

void expect_socket_tensor(const Tensor& t, const char* what) {
  NC_CHECK(t.defined() && t.device() == Device::CPU && t.is_contiguous(),
           "tensor parallel {}: the socket communicator takes contiguous host tensors", what);
}

class SocketCommunicator final : public Communicator {
 public:
  // links[r]: rank 0's link to rank r (links[0] null); a peer's links[0] is its link to rank 0.
  SocketCommunicator(int rank, int size, std::vector<std::unique_ptr<TcpLink>> links,
                     std::chrono::milliseconds timeout)
      : rank_(rank), size_(size), links_(std::move(links)), timeout_(timeout) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(Tensor x) override {
    expect_socket_tensor(x, "all_reduce_sum");
    NC_CHECK(x.dtype() == DType::F32, "tensor parallel all_reduce_sum: dtype {} (float32 only)",
             dtype_name(x.dtype()));
    guarded(Op::AllReduce, [&](Deadline d) {
      const int64_t bytes = int64_t(x.nbytes());
      if (rank_ != 0) {
        send_msg(*links_[0], Op::AllReduce, x.data(), bytes, d);
        expect(*links_[0], Op::AllReduce, bytes, d);
        links_[0]->recv(x.data(), size_t(bytes), d, "all_reduce_sum");
        return;
      }
      // Rank order, as the thread group and the whole model add: ((x0 + x1) + x2) + ...
      std::vector<float> part(static_cast<size_t>(x.numel()));
      auto* sum = static_cast<float*>(x.data());
      for (int r = 1; r < size_; ++r) {
        expect(*links_[size_t(r)], Op::AllReduce, bytes, d);
        links_[size_t(r)]->recv(part.data(), size_t(bytes), d, "all_reduce_sum");
        for (size_t i = 0; i < part.size(); ++i) sum[i] += part[i];
      }
      for (int r = 1; r < size_; ++r) send_msg(*links_[size_t(r)], Op::AllReduce, sum, bytes, d);
    });
  }

  void all_gather(const Tensor& x, Tensor out) override {
    expect_socket_tensor(x, "all_gather");
    expect_socket_tensor(out, "all_gather output");
    NC_CHECK(x.ndim() == 2, "tensor parallel all_gather: x {} is not [rows, columns]",
             shape_str(x.shape()));
    out.expect_shape({x.dim(0), size_ * x.dim(1)}, "tensor parallel all_gather output");
    out.expect_dtype(x.dtype(), "tensor parallel all_gather output");
    guarded(Op::AllGather, [&](Deadline d) {
      const int64_t bytes = int64_t(x.nbytes()), out_bytes = int64_t(out.nbytes());
      if (rank_ != 0) {
        send_msg(*links_[0], Op::AllGather, x.data(), bytes, d);
        expect(*links_[0], Op::AllGather, out_bytes, d);
        links_[0]->recv(out.data(), size_t(out_bytes), d, "all_gather");
        return;
      }
      std::vector<std::byte> part(static_cast<size_t>(bytes));
      for (int r = 0; r < size_; ++r) {
        if (r > 0) {
          expect(*links_[size_t(r)], Op::AllGather, bytes, d);
          links_[size_t(r)]->recv(part.data(), part.size(), d, "all_gather");
        }
        place_columns(r == 0 ? static_cast<const std::byte*>(x.data()) : part.data(), r, x, out);
      }
      for (int r = 1; r < size_; ++r)
        send_msg(*links_[size_t(r)], Op::AllGather, out.data(), out_bytes, d);
    });
  }

  void broadcast(std::vector<std::byte>& bytes, int root, Wait wait = Wait::Bounded) override {
    NC_CHECK(root >= 0 && root < size_, "tensor parallel broadcast: root {} outside [0, {})", root,
             size_);
    guarded(Op::Broadcast, [&](Deadline d) {
      if (rank_ != 0) {
        if (rank_ == root) {
          send_msg(*links_[0], Op::Broadcast, bytes.data(), int64_t(bytes.size()), d);
          return;
        }
        const Deadline first = wait == Wait::Unbounded ? Deadline::never() : d;
        bytes.resize(size_t(expect(*links_[0], Op::Broadcast, -1, first)));
        // The payload follows its header at once: the group's timeout from there.
        const Deadline rest = wait == Wait::Unbounded ? Deadline::after(timeout_) : d;
        links_[0]->recv(bytes.data(), bytes.size(), rest, "broadcast");
        return;
      }
      if (root != 0) {  // rank 0 relays the root's bytes to the others
        bytes.resize(size_t(expect(*links_[size_t(root)], Op::Broadcast, -1, d)));
        links_[size_t(root)]->recv(bytes.data(), bytes.size(), d, "broadcast");
      }
      for (int r = 1; r < size_; ++r)
        if (r != root)
          send_msg(*links_[size_t(r)], Op::Broadcast, bytes.data(), int64_t(bytes.size()), d);
    });
  }

  // Between collectives the other ranks send rank 0 nothing unasked: a readable link carries an
  // abort, or the end of a connection whose process died. (Only rank 0 looks: the others' link
  // carries rank 0's next command, which only a collective may read.)
  std::string failure() override {
    if (!failure_.empty() || rank_ != 0) return failure_;
    for (auto& link : links_) {
      if (!link || !link->readable()) continue;
      try {
        expect(*link, Op::Abort, -1, Deadline::after(timeout_));
        failure_ = fmt::format("{} sent an unexpected message between collectives", link->peer());
      } catch (const Error& e) {
        failure_ = e.what();
      }
      tell_others(failure_);
      break;
    }
    return failure_;
  }

  void abort(const std::string& why) override {
    if (!failure_.empty()) return;  // the others heard already (or are gone)
    failure_ = fmt::format("rank {} failed: {}", rank_, why);
    tell_others(failure_);
  }

 private:
  // Runs one collective under the group's timeout; a failure stops the group (the others are
  // told why) and every later collective throws it again.
  template <typename F>
  void guarded(Op op, F body) {
    NC_CHECK(failure_.empty(), "tensor parallel group stopped before rank {}'s {}: {}", rank_,
             socket_op_name(op), failure_);
    try {
      body(Deadline::after(timeout_));
    } catch (const Error& e) {
      failure_ = e.what();
      // A send that failed because rank 0 stopped the group and closed: its reason, when it
      // arrived before the close, names the rank that failed.
      const std::string why = rank_ != 0 ? pending_abort(*links_[0]) : std::string();
      if (!why.empty()) failure_ = why;
      tell_others(failure_);
      if (!why.empty()) fail("{}", why);
      throw;
    }
  }

  // The abort waiting on `link`, as its error text; "" if none is there.
  static std::string pending_abort(TcpLink& link) {
    if (!link.readable()) return {};
    try {
      expect(link, Op::Abort, -1, Deadline::after(std::chrono::milliseconds(100)));
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.find("stopped the group") != std::string::npos) return what;
    }
    return {};
  }

  void tell_others(const std::string& why) {
    const Deadline d = Deadline::after(kAbortSendTime);
    for (auto& link : links_)
      if (link) try_send_abort(*link, why, d);
  }

  // Rank r's [R, C] block into columns [r * C, (r + 1) * C) of out [R, size * C].
  void place_columns(const std::byte* part, int r, const Tensor& x, Tensor& out) const {
    const int64_t rows = x.dim(0);
    const size_t row = rows > 0 ? x.nbytes() / size_t(rows) : 0;
    auto* dst = static_cast<std::byte*>(out.data());
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(dst + (size_t(i) * size_t(size_) + size_t(r)) * row, part + size_t(i) * row, row);
  }

  int rank_, size_;
  std::vector<std::unique_ptr<TcpLink>> links_;
  std::chrono::milliseconds timeout_;
  std::string failure_;
};

void check_socket_group(int rank, int size) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, size >= 1 && size <= 1024 && rank >= 0 && rank < size,
              "tensor parallel: rank {} of a group of {} (size 1..1024, rank in [0, size))", rank,
              size);
}

// A connecting process's first message: a rank's Hello, the reason a rank cannot join (an abort,
// from report_join_failure), or neither (a port scan, another program: dropped, the wait goes on).
struct JoinMessage {
  enum Kind { Joined, Failed, Stranger } kind = Stranger;
  Hello hello;
  std::string failure;
};

JoinMessage read_join_message(TcpLink& link) {
  JoinMessage m;
  try {
    const Deadline d = Deadline::after(kHelloTime);
    Header h;
    link.recv(&h, sizeof(h), d, "set-up");
    if (h.magic != kMagic) return m;
    if (h.op == Op::Abort && h.bytes >= 0 && h.bytes <= kMaxJoinFailureBytes) {
      m.failure.resize(size_t(h.bytes));
      link.recv(m.failure.data(), m.failure.size(), d, "set-up");
      m.kind = JoinMessage::Failed;
    } else if (h.op == Op::Hello && h.bytes == int64_t(sizeof(Hello))) {
      link.recv(&m.hello, sizeof(Hello), d, "set-up");
      m.kind = JoinMessage::Joined;
    }
  } catch (const Error&) {
    m.kind = JoinMessage::Stranger;
  }
  return m;
}

}  // namespace

bool report_join_failure(const HostPort& root, int rank, const std::string& why,
                         std::chrono::milliseconds wait) {
  std::string text = fmt::format("rank {} could not join: {}", rank, why);
  text.resize(std::min(text.size(), size_t(kMaxJoinFailureBytes)));
  try {
    const Deadline d = Deadline::after(wait);
    const std::unique_ptr<TcpLink> link = tcp_connect(root, d);
    send_msg(*link, Op::Abort, text.data(), int64_t(text.size()), d);
    return true;
  } catch (const Error&) {  // rank 0 is gone or not listening (yet)
    return false;
  }
}

std::unique_ptr<Communicator> make_socket_root(std::unique_ptr<TcpListener> listener, int size,
                                               std::chrono::milliseconds join,
                                               std::chrono::milliseconds timeout) {
  check_socket_group(0, size);
  const Deadline d = Deadline::after(join);
  std::vector<std::unique_ptr<TcpLink>> links(static_cast<size_t>(size));
  // Stops the set-up: every rank joined so far (and `link`, if any) hears why.
  auto stop = [&](TcpLink* link, const std::string& why, ErrorKind kind) {
    const Deadline tell = Deadline::after(kAbortSendTime);
    for (auto& l : links)
      if (l) try_send_abort(*l, why, tell);
    if (link) try_send_abort(*link, why, tell);
    fail_as(kind, "tensor parallel set-up: {}", why);
  };
  for (int joined = 1; joined < size;) {
    std::unique_ptr<TcpLink> link = listener->accept(d);
    const JoinMessage first = read_join_message(*link);
    if (first.kind == JoinMessage::Stranger) continue;
    if (first.kind == JoinMessage::Failed) stop(nullptr, first.failure, ErrorKind::Internal);
    const Hello hello = first.hello;
    std::string bad;
    if (hello.size != size)
      bad = fmt::format("rank {} was started for a group of {}, rank 0 for {}", hello.rank,
                        hello.size, size);
    else if (hello.rank < 1 || hello.rank >= size || links[size_t(hello.rank)])
      bad = fmt::format("two processes claim rank {} (or it is outside [1, {}))", hello.rank, size);
    if (!bad.empty()) stop(link.get(), bad, ErrorKind::InvalidArgument);
    link->set_peer(fmt::format("rank {}", hello.rank));
    links[size_t(hello.rank)] = std::move(link);
    ++joined;
  }
  for (int r = 1; r < size; ++r) send_msg(*links[size_t(r)], Op::Hello, nullptr, 0, d);
  return std::make_unique<SocketCommunicator>(0, size, std::move(links), timeout);
}

std::unique_ptr<Communicator> make_socket_peer(const HostPort& root, int rank, int size,
                                               std::chrono::milliseconds join,
                                               std::chrono::milliseconds timeout) {
  check_socket_group(rank, size);
  NC_CHECK_AS(ErrorKind::InvalidArgument, rank > 0, "tensor parallel: rank 0 listens, not joins");
  const Deadline d = Deadline::after(join);
  std::vector<std::unique_ptr<TcpLink>> links(1);
  links[0] = tcp_connect(root, d);
  const Hello hello{rank, size};
  send_msg(*links[0], Op::Hello, &hello, sizeof(hello), d);
  expect(*links[0], Op::Hello, 0, d);  // every rank has joined
  return std::make_unique<SocketCommunicator>(rank, size, std::move(links), timeout);
}

}  // namespace nc
