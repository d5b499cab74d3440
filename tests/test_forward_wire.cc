// A step's plan as bytes (model/forward_wire.h): what tensor parallelism's rank 0 sends the
// other ranks. Every field round-trips exactly; damaged bytes are errors naming what was read.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "model/forward_wire.h"

namespace nc {
namespace {

ForwardInput sample_plan() {
  ForwardInput in;
  in.token_ids = {5, -1, 7, 9};  // a placeholder id too
  in.positions = {0, 12, 13, 40};
  in.attention.num_tokens = 4;
  PagedKVBatch shared, own;
  shared.add(3, {4, 5}, 32, 16);
  own.add(1, {9}, 13, 16);
  own.add(3, {2, 3, 6}, 41, 16);
  own.causal = false;
  in.attention.levels = {shared, own};
  in.logit_rows = {0, 3};
  in.sparse_budgets = {0, 2048};
  in.kv_shifts = {{3, 64, 32}, {7, 80, 48}};
  return in;
}

void expect_same(const ForwardInput& a, const ForwardInput& b) {
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.attention.num_tokens, b.attention.num_tokens);
  ASSERT_EQ(a.attention.levels.size(), b.attention.levels.size());
  for (size_t l = 0; l < a.attention.levels.size(); ++l) {
    const PagedKVBatch &x = a.attention.levels[l], &y = b.attention.levels[l];
    EXPECT_EQ(x.qo_indptr, y.qo_indptr) << l;
    EXPECT_EQ(x.kv_indptr, y.kv_indptr) << l;
    EXPECT_EQ(x.kv_indices, y.kv_indices) << l;
    EXPECT_EQ(x.kv_last_page_len, y.kv_last_page_len) << l;
    EXPECT_EQ(x.causal, y.causal) << l;
  }
  EXPECT_EQ(a.logit_rows, b.logit_rows);
  EXPECT_EQ(a.sparse_budgets, b.sparse_budgets);
  ASSERT_EQ(a.kv_shifts.size(), b.kv_shifts.size());
  for (size_t i = 0; i < a.kv_shifts.size(); ++i) {
    EXPECT_EQ(a.kv_shifts[i].page, b.kv_shifts[i].page);
    EXPECT_EQ(a.kv_shifts[i].from, b.kv_shifts[i].from);
    EXPECT_EQ(a.kv_shifts[i].to, b.kv_shifts[i].to);
  }
}

TEST(ForwardWire, EveryFieldRoundTrips) {
  const ForwardInput in = sample_plan();
  expect_same(decode_forward_input(encode_forward_input(in)), in);
  expect_same(decode_forward_input(encode_forward_input(ForwardInput{})), ForwardInput{});
}

TEST(ForwardWire, AnyNumberOfLevelsRoundTrips) {
  // Cascade Always over nested prefixes makes as many levels as the sharing is deep; a fixed cap
  // of 64 here stopped a tensor-parallel group that rank 0 had planned (review of 2026-12-07).
  ForwardInput in;
  in.attention.num_tokens = 1;
  for (int l = 0; l < 100; ++l) {
    PagedKVBatch b;
    b.add(1, {l}, 16, 16);
    b.causal = l == 99;
    in.attention.levels.push_back(b);
  }
  expect_same(decode_forward_input(encode_forward_input(in)), in);
  // A level count the bytes cannot hold is still an error.
  std::vector<std::byte> bytes = encode_forward_input(ForwardInput{});
  const int32_t many = 1 << 20;
  std::memcpy(bytes.data() + 3 * sizeof(int32_t), &many, sizeof(many));  // the level count
  EXPECT_THROW(decode_forward_input(bytes), Error);
}

TEST(ForwardWire, DamagedBytesAreErrorsNamingWhatWasRead) {
  const std::vector<std::byte> good = encode_forward_input(sample_plan());
  for (size_t cut : {size_t(0), size_t(3), good.size() / 2, good.size() - 1}) {
    const std::span<const std::byte> shorter(good.data(), cut);
    EXPECT_THROW(decode_forward_input(shorter), Error) << "cut at " << cut;
  }
  std::vector<std::byte> longer = good;
  longer.push_back(std::byte{0});
  try {
    decode_forward_input(longer);
    FAIL() << "trailing bytes accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 bytes after the plan"), std::string::npos) << e.what();
  }
  std::vector<std::byte> huge = good;
  const int32_t n = 1 << 30;  // the token ids' length, far past the end
  std::memcpy(huge.data(), &n, sizeof(n));
  try {
    decode_forward_input(huge);
    FAIL() << "an oversized length accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token ids has length"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nc
