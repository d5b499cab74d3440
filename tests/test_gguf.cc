// GGUF reader tests. Fixtures come from tools/make_gguf_fixtures.py (gguf-py writes the files and
// dequantizes them), so values are checked against the reference implementation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"

namespace nc {
namespace test_gguf {

using nlohmann::json;

const std::string kDir = std::string(NC_FIXTURES_DIR) + "/gguf/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  return json::parse(f);
}

std::vector<float> read_f32(const std::string& path) {
  std::vector<uint8_t> b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// Checks a metadata value against the JSON value the fixture script wrote.
void expect_value(const GgufValue& v, const json& want, const std::string& type,
                  const std::string& key) {
  SCOPED_TRACE(key + " (" + type + ")");
  if (type.rfind("array", 0) == 0) {
    const auto* arr = std::get_if<GgufArray>(&v.v);
    ASSERT_NE(arr, nullptr);
    ASSERT_EQ(arr->size(), want.size());
    std::string elem = type.substr(6, type.size() - 7);  // "array[X]" -> "X"
    for (size_t i = 0; i < arr->size(); ++i) expect_value((*arr)[i], want[i], elem, key);
  } else if (type == "string") {
    ASSERT_TRUE(std::holds_alternative<std::string>(v.v));
    EXPECT_EQ(std::get<std::string>(v.v), want.get<std::string>());
  } else if (type == "bool") {
    ASSERT_TRUE(std::holds_alternative<bool>(v.v));
    EXPECT_EQ(std::get<bool>(v.v), want.get<bool>());
  } else if (type == "float32" || type == "float64") {
    ASSERT_TRUE(std::holds_alternative<double>(v.v));
    EXPECT_EQ(std::get<double>(v.v), want.get<double>());
  } else if (type[0] == 'u') {
    ASSERT_TRUE(std::holds_alternative<uint64_t>(v.v));
    EXPECT_EQ(std::get<uint64_t>(v.v), want.get<uint64_t>());
  } else {
    ASSERT_TRUE(std::holds_alternative<int64_t>(v.v));
    EXPECT_EQ(std::get<int64_t>(v.v), want.get<int64_t>());
  }
}

TEST(GgufMetadata, EveryValueTypeMatchesWriter) {
  GgufFile f = GgufFile::open(kDir + "metadata.gguf");
  json want = read_json(kDir + "metadata.json");
  EXPECT_EQ(f.version(), 3u);
  size_t n_keys = 0;
  for (const auto& [key, entry] : want.items()) {
    if (key == "_tensors") continue;
    ++n_keys;
    ASSERT_TRUE(f.has(key)) << key;
    expect_value(f.get(key), entry["value"], entry["type"].get<std::string>(), key);
  }
  EXPECT_EQ(f.metadata().size(), n_keys);
}

TEST(GgufMetadata, TypedGetters) {
  GgufFile f = GgufFile::open(kDir + "metadata.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "testarch");
  EXPECT_EQ(f.get_int("test.u8"), 200);
  EXPECT_EQ(f.get_int("test.i64"), -9000000000000000000LL);
  EXPECT_THROW(f.get_int("test.u64"), Error);  // 1.8e19 does not fit in int64
  EXPECT_FLOAT_EQ(float(f.get_float("test.f32")), 3.14159f);
  EXPECT_EQ(f.get_float("test.i32"), -2000000000.0);  // integers convert
  EXPECT_TRUE(f.get_bool("test.bool_true"));
  EXPECT_EQ(f.get_string_array("test.arr_str"),
            (std::vector<std::string>{"a", "", "ccc", "\xc4\xa0the"}));
  EXPECT_EQ(f.get_int_array("test.arr_i32"), (std::vector<int64_t>{-1, 2, -3, 4}));
  EXPECT_EQ(f.get_float_array("test.arr_f32"), (std::vector<double>{0.5, -1.25, double(1e-3f)}));
  EXPECT_EQ(f.get_int("missing.key", 7), 7);
  EXPECT_EQ(f.get_string("missing.key", "x"), "x");
  EXPECT_THROW(f.get_int("missing.key"), Error);
  EXPECT_THROW(f.get_string("test.u8"), Error);
  EXPECT_THROW(f.get_int("test.string", 1), Error);  // present with another type
  EXPECT_THROW(f.get_bool("test.u8"), Error);
  EXPECT_THROW(f.get_string_array("test.arr_i32"), Error);
  try {
    f.get_int("no.such.key");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.key"), std::string::npos);
  }
}

TEST(GgufMetadata, TensorInfosAndCustomAlignment) {
  GgufFile f = GgufFile::open(kDir + "metadata.gguf");
  json want = read_json(kDir + "metadata.json")["_tensors"];
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  ASSERT_EQ(f.tensors().size(), 2u);
  for (const auto& [name, t] : want.items()) {
    const GgufTensorInfo* info = f.find_tensor(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(info->type, GgmlType::F32);
    EXPECT_EQ(info->offset % 64, 0u);
    std::vector<int64_t> shape = t["shape"].get<std::vector<int64_t>>();
    EXPECT_EQ(info->ne, std::vector<int64_t>(shape.rbegin(), shape.rend()));
    HostTensor h = f.load_f32(*info);
    EXPECT_EQ(h.shape, shape);
    EXPECT_EQ(h.data, t["values"].get<std::vector<float>>());
  }
  EXPECT_EQ(f.find_tensor("t.c"), nullptr);
}

TEST(GgufMetadata, ParseFromMemoryEqualsOpen) {
  std::vector<uint8_t> bytes = read_bytes(kDir + "metadata.gguf");
  GgufFile a = GgufFile::parse(bytes.data(), bytes.size());
  GgufFile b = GgufFile::open(kDir + "metadata.gguf");
  EXPECT_EQ(a.metadata().size(), b.metadata().size());
  EXPECT_EQ(a.get_string_array("test.arr_str"), b.get_string_array("test.arr_str"));
  EXPECT_EQ(a.load_f32(a.tensors()[0]).data, b.load_f32(b.tensors()[0]).data);
}

TEST(GgufMetadata, OpenMissingFileNamesIt) {
  try {
    GgufFile::open("/nonexistent/x.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.gguf"), std::string::npos);
    EXPECT_EQ(e.kind(), ErrorKind::NotFound) << e.what();
  }
}

// ---- dequantization against gguf-py ----

class GgufDequant : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufDequant, MatchesGgufPy) {
  const std::string name = GetParam();
  GgufFile f = GgufFile::open(kDir + "quants.gguf");
  const GgufTensorInfo* t = f.find_tensor(name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_STREQ(ggml_type_name(t->type), name.c_str());
  EXPECT_EQ(t->offset % 32, 0u);
  HostTensor h = f.load_f32(*t);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{4, 256}));
  std::vector<float> want = read_f32(kDir + "quants/" + name + ".f32");
  ASSERT_EQ(h.data.size(), want.size());
  // Bit-exact on plain x86-64; the tolerance only allows for fused multiply-add elsewhere.
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(h.data[i], want[i], 1e-6 * std::max(1.0f, std::fabs(want[i]))) << "at " << i;
}

INSTANTIATE_TEST_SUITE_P(GgufAllTypes, GgufDequant,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                           "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"),
                         [](const auto& p) { return std::string(p.param); });

TEST(GgufDequantBlocks, GeometryAndErrors) {
  EXPECT_EQ(ggml_block(GgmlType::Q4_1).bytes, 20);
  EXPECT_EQ(ggml_block(GgmlType::Q6_K).bytes, 210);
  EXPECT_EQ(ggml_block(GgmlType::Q8_K).bytes, 292);
  std::vector<uint8_t> src(64);
  std::vector<float> dst(64);
  EXPECT_THROW(dequantize(GgmlType::Q4_0, src.data(), dst.data(), 31), Error);
  EXPECT_THROW(ggml_block(GgmlType(5)), Error);
}

// ---- malformed input: hand-built byte buffers ----

// Little-endian GGUF writer for hand-made (often broken) files.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Bytes& u8(uint8_t v) { return raw(&v, 1); }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& f32(float v) { return raw(&v, 4); }
  Bytes& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Bytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return raw("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  }
  // A tensor info: name, dims (ne order), type, offset.
  Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    str(name).u32(uint32_t(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(off);
  }
  Bytes& pad(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
};

// A small valid v3 file: a string key, an int32 array, an F32 [4] and a Q8_0 [32] tensor whose
// data ends exactly at the end of the file.
Bytes small_valid() {
  Bytes x;
  x.header(3, 2, 2);
  x.str("general.architecture").u32(8).str("llama");
  x.str("a.list").u32(9).u32(5).u64(3).u32(1).u32(2).u32(3);
  x.tensor("w.f32", {4}, 0, 0).tensor("w.q8", {32}, 8, 32).pad(32);
  for (float v : {1.0f, -2.0f, 0.5f, 4.0f}) x.f32(v);
  x.pad(32);
  x.raw("\x00\x3c", 2);  // d = 1.0 as f16
  for (int i = 0; i < 32; ++i) x.u8(uint8_t(int8_t(i - 16)));
  return x;
}

GgufFile parse(const Bytes& x) {
  return GgufFile::parse(x.b.data(), x.b.size());
}

// Expects parsing to throw nc::Error whose message contains `what`, of kind `kind` (a malformed
// file is InvalidArgument; a valid one this loader cannot read is Unsupported).
void expect_error(const Bytes& x, const std::string& what,
                  ErrorKind kind = ErrorKind::InvalidArgument) {
  try {
    parse(x);
    ADD_FAILURE() << "no error; expected one mentioning '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    EXPECT_EQ(error_kind_name(e.kind()), std::string(error_kind_name(kind))) << e.what();
  }
}

TEST(GgufMalformed, SmallValidFileParses) {
  Bytes x = small_valid();
  GgufFile f = parse(x);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int_array("a.list"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(f.load_f32(*f.find_tensor("w.f32")).data, (std::vector<float>{1, -2, 0.5f, 4}));
  HostTensor q = f.load_f32(*f.find_tensor("w.q8"));
  ASSERT_EQ(q.data.size(), 32u);
  EXPECT_EQ(q.data[0], -16.0f);
  EXPECT_EQ(q.data[31], 15.0f);
}

TEST(GgufMalformed, Version2Accepted) {
  Bytes x = small_valid();
  x.b[4] = 2;
  EXPECT_EQ(parse(x).version(), 2u);
}

TEST(GgufMalformed, EveryTruncatedPrefixIsAnError) {
  Bytes x = small_valid();
  for (size_t n = 0; n < x.b.size(); ++n) {
    std::vector<uint8_t> prefix(x.b.begin(), x.b.begin() + ptrdiff_t(n));
    EXPECT_THROW(GgufFile::parse(prefix.data(), prefix.size()), Error) << "prefix " << n;
  }
  EXPECT_THROW(GgufFile::parse(nullptr, 0), Error);
}

TEST(GgufMalformed, BadMagic) {
  Bytes x = small_valid();
  x.b[0] = 'X';
  expect_error(x, "bad magic");
}

TEST(GgufMalformed, UnsupportedVersions) {
  Bytes x = small_valid();
  x.b[4] = 1;
  expect_error(x, "version 1", ErrorKind::Unsupported);
  x.b[4] = 99;
  expect_error(x, "version 99", ErrorKind::Unsupported);
  x.b[4] = 0;
  x.b[7] = 3;  // 3 stored big-endian
  expect_error(x, "big-endian", ErrorKind::Unsupported);
}

TEST(GgufMalformed, UnknownValueType) {
  Bytes x;
  x.header(3, 0, 1).str("k").u32(13).u32(0);
  expect_error(x, "unknown value type 13");
  Bytes y;
  y.header(3, 0, 1).str("k").u32(9).u32(77).u64(1).u32(0);
  expect_error(y, "unknown array element type 77");
}

TEST(GgufMalformed, BadBool) {
  Bytes x;
  x.header(3, 0, 1).str("flag").u32(7).u8(2);
  expect_error(x, "flag");
}

TEST(GgufMalformed, HugeStringLength) {
  Bytes x;
  x.header(3, 0, 1).u64(uint64_t(1) << 62).raw("abcdefghijklmnopqrstuvwxyz", 26);
  expect_error(x, "metadata key has length");
  Bytes y;
  y.header(3, 0, 1).str("k").u32(8).u64(~uint64_t(0));
  expect_error(y, "string value has length");
}

TEST(GgufMalformed, HugeArrayCount) {
  Bytes x;
  x.header(3, 0, 1).str("k").u32(9).u32(4).u64(uint64_t(1) << 61).u32(0);
  expect_error(x, "cannot fit");
  Bytes y;  // array of strings: each needs at least its 8-byte length
  y.header(3, 0, 1).str("k").u32(9).u32(8).u64(10).u64(0);
  expect_error(y, "cannot fit");
}

TEST(GgufMalformed, DeeplyNestedArrays) {
  Bytes x;
  x.header(3, 0, 1).str("k").u32(9);
  for (int i = 0; i < 10000; ++i) x.u32(9).u64(1);
  expect_error(x, "nested");
}

TEST(GgufMalformed, HugeCounts) {
  Bytes x;
  x.header(3, uint64_t(1) << 60, 0);
  expect_error(x, "tensor count");
  Bytes y;
  y.header(3, 0, ~uint64_t(0));
  expect_error(y, "metadata count");
}

TEST(GgufMalformed, DuplicateKeyAndTensorName) {
  Bytes x;
  x.header(3, 0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2);
  expect_error(x, "duplicate metadata key 'k'");
  Bytes y;
  y.header(3, 2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad(32);
  y.b.resize(y.b.size() + 64);
  expect_error(y, "duplicate tensor name 't'");
}

TEST(GgufMalformed, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Bytes x;
    x.header(3, 0, 1).str("general.alignment").u32(4).u32(a);
    expect_error(x, "general.alignment");
  }
  Bytes y;  // a signed alignment is a type error
  y.header(3, 0, 1).str("general.alignment").u32(5).u32(32);
  expect_error(y, "general.alignment");
}

// A file with one tensor described by (ne, type, offset), followed by `data_bytes` of data.
Bytes one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes) {
  Bytes x;
  x.header(3, 1, 0).tensor("t", std::move(ne), type, offset).pad(32);
  x.b.resize(x.b.size() + data_bytes);
  return x;
}

TEST(GgufMalformed, UnknownTensorType) {
  for (uint32_t type : {4u, 5u, 9u, 16u, 29u, 31u, 99u, 0xffffffffu})
    expect_error(one_tensor({32}, type, 0, 1024), "unknown or unsupported ggml type",
                 ErrorKind::Unsupported);
  parse(one_tensor({32}, 30, 0, 64));  // BF16 is fine
}

TEST(GgufMalformed, TensorOutsideTheFile) {
  expect_error(one_tensor({16}, 0, 0, 63), "outside the data section");
  expect_error(one_tensor({16}, 0, 64, 64), "outside the data section");
  expect_error(one_tensor({16}, 0, ~uint64_t(31), 64), "outside the data section");
  parse(one_tensor({16}, 0, 0, 64));
}

TEST(GgufMalformed, MisalignedOffset) {
  expect_error(one_tensor({4}, 0, 4, 64), "not a multiple of the alignment");
}

TEST(GgufMalformed, BadDims) {
  expect_error(one_tensor({1, 1, 1, 1, 1}, 0, 0, 64), "n_dims 5");
  expect_error(one_tensor({}, 0, 0, 64), "n_dims 0");
  expect_error(one_tensor({4, 0}, 0, 0, 64), "dimension 1 has invalid size 0");
  expect_error(one_tensor({~uint64_t(0)}, 0, 0, 64), "invalid size");
  expect_error(one_tensor({uint64_t(1) << 32, uint64_t(1) << 32}, 0, 0, 64), "overflows");
  // Fits in int64 elements but not in bytes.
  expect_error(one_tensor({uint64_t(1) << 31, uint64_t(1) << 31}, 0, 0, 64), "overflows");
  expect_error(one_tensor({16, 2}, 2, 0, 64), "not a multiple of the Q4_0 block size 32");
}

TEST(GgufMalformed, HandMadeTensorInfoCannotEscape) {
  Bytes x = small_valid();
  GgufFile f = parse(x);
  GgufTensorInfo t = *f.find_tensor("w.f32");
  t.offset = 1 << 20;
  EXPECT_THROW(f.tensor_data(t), Error);
  t = *f.find_tensor("w.f32");
  t.ne = {8};  // more elements than its bytes
  EXPECT_THROW(f.load_f32(t), Error);
}

// ---- the real model ----

class GgufModel : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::string(NC_DEFAULT_MODEL_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path_)) GTEST_SKIP() << path_ << " is absent";
    want_ = read_json(kDir + "smollm2_expected.json");
  }
  std::string path_;
  json want_;
};

TEST_F(GgufModel, MetadataMatchesGgufPy) {
  GgufFile f = GgufFile::open(path_);
  EXPECT_EQ(f.version(), want_["version"].get<uint32_t>());
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.architecture"), want_["architecture"].get<std::string>());
  EXPECT_EQ(f.tensors().size(), want_["tensor_count"].get<size_t>());
  EXPECT_EQ(f.metadata().size(), want_["kv_count"].get<size_t>());
  EXPECT_EQ(f.get_int("llama.block_count"), want_["block_count"].get<int64_t>());
  EXPECT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), want_["rms_eps"].get<double>());
  std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), want_["n_tokens"].get<size_t>());
  auto first = want_["first_tokens"].get<std::vector<std::string>>();
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(tokens[i], first[i]);
}

TEST_F(GgufModel, DequantizedTensorsMatchGgufPy) {
  GgufFile f = GgufFile::open(path_);
  for (const auto& [name, t] : want_["tensors"].items()) {
    SCOPED_TRACE(name);
    const GgufTensorInfo* info = f.find_tensor(name);
    ASSERT_NE(info, nullptr);
    EXPECT_STREQ(ggml_type_name(info->type), t["type"].get<std::string>().c_str());
    EXPECT_EQ(info->ne, t["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(f.data_offset() + info->offset, t["offset"].get<uint64_t>());
    HostTensor h = f.load_f32(*info);
    EXPECT_EQ(h.shape, t["shape"].get<std::vector<int64_t>>());
    auto idx = t["index"].get<std::vector<size_t>>();
    auto val = t["values"].get<std::vector<float>>();
    for (size_t i = 0; i < idx.size(); ++i)
      EXPECT_NEAR(h.data[idx[i]], val[i], 1e-6 * std::max(1.0f, std::fabs(val[i])))
          << "at " << idx[i];
  }
}

}  // namespace test_gguf
}  // namespace nc
