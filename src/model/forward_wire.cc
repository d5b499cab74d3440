// ForwardInput as bytes (model/forward_wire.h).
#include "model/forward_wire.h"

#include <cstring>

#include "core/error.h"

namespace nc {
namespace {

class Writer {
 public:
  void i32(int32_t v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof(v));
  }
  void array(const std::vector<int32_t>& v) {
    i32(int32_t(v.size()));
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    out.insert(out.end(), p, p + v.size() * sizeof(int32_t));
  }
  std::vector<std::byte> out;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : bytes(b) {}
  int32_t i32(const char* what) {
    NC_CHECK(pos + sizeof(int32_t) <= bytes.size(), "step plan: the bytes end inside {}", what);
    int32_t v;
    std::memcpy(&v, bytes.data() + pos, sizeof(v));
    pos += sizeof(v);
    return v;
  }
  std::vector<int32_t> array(const char* what) {
    const int32_t n = i32(what);
    NC_CHECK(n >= 0 && size_t(n) <= (bytes.size() - pos) / sizeof(int32_t),
             "step plan: {} has length {} with {} bytes left", what, n, bytes.size() - pos);
    std::vector<int32_t> v(static_cast<size_t>(n));
    if (!v.empty()) std::memcpy(v.data(), bytes.data() + pos, v.size() * sizeof(int32_t));
    pos += v.size() * sizeof(int32_t);
    return v;
  }
  std::span<const std::byte> bytes;
  size_t pos = 0;
};

}  // namespace

std::vector<std::byte> encode_forward_input(const ForwardInput& in) {
  Writer w;
  w.array(in.token_ids);
  w.array(in.positions);
  w.i32(in.attention.num_tokens);
  w.i32(int32_t(in.attention.levels.size()));
  for (const PagedKVBatch& b : in.attention.levels) {
    w.array(b.qo_indptr);
    w.array(b.kv_indptr);
    w.array(b.kv_indices);
    w.array(b.kv_last_page_len);
    w.i32(b.causal ? 1 : 0);
  }
  w.array(in.logit_rows);
  w.array(in.sparse_budgets);
  std::vector<int32_t> shifts;
  for (const KVPageShift& s : in.kv_shifts) shifts.insert(shifts.end(), {s.page, s.from, s.to});
  w.array(shifts);
  return std::move(w.out);
}

ForwardInput decode_forward_input(std::span<const std::byte> bytes) {
  Reader r(bytes);
  ForwardInput in;
  in.token_ids = r.array("token ids");
  in.positions = r.array("positions");
  in.attention.num_tokens = r.i32("the token count");
  const int32_t levels = r.i32("the level count");
  // Bounded by the bytes (each level holds four array lengths and its causal flag), not by a
  // fixed count: rank 0's planner may make any number (cascade Always over nested prefixes;
  // a cap of 64 here stopped a tensor-parallel group at 70, review of 2026-12-07).
  constexpr size_t kMinLevelBytes = 5 * sizeof(int32_t);
  NC_CHECK(levels >= 0 && size_t(levels) <= (r.bytes.size() - r.pos) / kMinLevelBytes,
           "step plan: {} attention levels with {} bytes left", levels, r.bytes.size() - r.pos);
  for (int32_t l = 0; l < levels; ++l) {
    PagedKVBatch b;
    b.qo_indptr = r.array("qo_indptr");
    b.kv_indptr = r.array("kv_indptr");
    b.kv_indices = r.array("kv_indices");
    b.kv_last_page_len = r.array("kv_last_page_len");
    b.causal = r.i32("the causal flag") != 0;
    in.attention.levels.push_back(std::move(b));
  }
  in.logit_rows = r.array("logit rows");
  in.sparse_budgets = r.array("sparse budgets");
  const std::vector<int32_t> shifts = r.array("KV page shifts");
  NC_CHECK(shifts.size() % kKVPageShiftFields == 0, "step plan: {} KV page shift values",
           shifts.size());
  for (size_t i = 0; i < shifts.size(); i += kKVPageShiftFields)
    in.kv_shifts.push_back({shifts[i], shifts[i + 1], shifts[i + 2]});
  NC_CHECK(r.pos == bytes.size(), "step plan: {} bytes after the plan", bytes.size() - r.pos);
  return in;
}

}  // namespace nc
