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
#include "model/gguf.h"

namespace nc {
namespace {

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

}  // namespace
}  // namespace nc
