// safetensors reader tests. Files come from the `safetensors` Python package and transformers'
// save_pretrained (tools/make_loader_fixtures.py); malformed inputs are built by hand here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"
#include "loader_test_util.h"

namespace nc {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace loader_test;  // NOLINT

// A safetensors image: 8-byte little-endian header length, header, data.
std::string make_file(const std::string& header, const std::string& data, uint64_t len) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((len >> (8 * i)) & 0xff);
  return out + header + data;
}
std::string make_file(const std::string& header, const std::string& data) {
  return make_file(header, data, header.size());
}

SafetensorsFile parse(const std::string& bytes) {
  return SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Expects parse to throw an nc::Error whose message contains `needle`.
void expect_parse_error(const std::string& bytes, const std::string& needle) {
  try {
    parse(bytes);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' lacks '" << needle << "'";
  }
}

std::string f32_bytes(std::vector<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// Two F32 values then two BF16 values (1.0, -2.0): a small valid file.
const std::string kValidHeader = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},)"
                                 R"("__metadata__":{"format":"pt"}})";
const std::string kValidData = f32_bytes({0.25f, -8.0f}) + std::string("\x80\x3f\x00\xc0", 4);

std::string tensor_header(const std::string& entry) {
  return R"({"t":)" + entry + "}";
}

TEST(Safetensors, DtypesMatchPythonWriter) {
  const json want = read_json(kDir + "dtypes.json");
  const SafetensorsFile f = SafetensorsFile::open(kDir + "dtypes.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "nanocascade");
  ASSERT_EQ(f.tensors().size(), want.size());
  for (const auto& [name, w] : want.items()) {
    SCOPED_TRACE(name);
    const SafetensorsTensorInfo* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->shape, w["shape"].get<std::vector<int64_t>>());
    if (w["values"].is_null()) continue;
    const HostTensor h = f.load_f32(*t);
    EXPECT_EQ(h.shape, t->shape);
    const auto vals = w["values"].get<std::vector<float>>();
    ASSERT_EQ(h.data.size(), vals.size());
    for (size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(h.data[i], vals[i]) << "element " << i;
  }
  // Values spelled out, independent of the JSON: f16 max and subnormal, bf16 pattern.
  EXPECT_EQ(f.load_f32("f16").data[2], 65504.0f);
  EXPECT_EQ(f.load_f32("f16").data[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(f.load_f32("bf16").data[1], -3.140625f);
  EXPECT_EQ(f.load_f32("scalar").data, std::vector<float>{42.0f});
  EXPECT_EQ(f.load_f32("empty").data.size(), 0u);
}

TEST(Safetensors, NonFloatDtypeNamesDtypeAndTensor) {
  const SafetensorsFile f = SafetensorsFile::open(kDir + "dtypes.safetensors");
  try {
    f.load_f32("i64");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("I64"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'i64'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.load_f32("no_such_tensor"), Error);
}

TEST(Safetensors, ParseFromMemoryEqualsOpen) {
  const std::string bytes = read_file(kDir + "dtypes.safetensors");
  const SafetensorsFile m = parse(bytes);
  const SafetensorsFile f = SafetensorsFile::open(kDir + "dtypes.safetensors");
  ASSERT_EQ(m.tensors().size(), f.tensors().size());
  for (size_t i = 0; i < m.tensors().size(); ++i) {
    EXPECT_EQ(m.tensors()[i].name, f.tensors()[i].name);
    EXPECT_EQ(m.tensors()[i].begin, f.tensors()[i].begin);
  }
  EXPECT_EQ(m.load_f32("bf16").data, f.load_f32("bf16").data);
}

TEST(Safetensors, HandBuiltValidFile) {
  const std::string bytes = make_file(kValidHeader, kValidData);  // parse() keeps no copy
  const SafetensorsFile f = parse(bytes);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "a");  // in data order
  EXPECT_EQ(f.load_f32("a").data, (std::vector<float>{0.25f, -8.0f}));
  EXPECT_EQ(f.load_f32("b").data, (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.load_f32("b").shape, (std::vector<int64_t>{1, 2}));
  // Header padded with spaces, as the Rust writer does for alignment; data then unaligned.
  const std::string padded = make_file(kValidHeader + "   ", kValidData);
  const SafetensorsFile g = parse(padded);
  EXPECT_EQ(g.load_f32("a").data, (std::vector<float>{0.25f, -8.0f}));
  // No tensors at all, and a null __metadata__, are valid.
  EXPECT_TRUE(parse(make_file("{}", "")).tensors().empty());
  EXPECT_TRUE(parse(make_file(R"({"__metadata__":null})", "")).metadata().empty());
}

TEST(Safetensors, TensorsListedOutOfDataOrder) {
  const std::string h = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                        R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string bytes = make_file(h, f32_bytes({1.0f, 2.0f}));
  const SafetensorsFile f = parse(bytes);
  EXPECT_EQ(f.load_f32("a").data[0], 1.0f);
  EXPECT_EQ(f.load_f32("b").data[0], 2.0f);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  const std::string full = make_file(kValidHeader, kValidData);
  for (size_t n = 0; n < full.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_THROW(parse(full.substr(0, n)), Error);
  }
}

TEST(Safetensors, BadHeaderLength) {
  expect_parse_error(make_file(kValidHeader, kValidData, 1ull << 40), "limit");
  expect_parse_error(make_file(kValidHeader, kValidData, ~0ull), "limit");
  expect_parse_error(make_file(kValidHeader, kValidData, kValidHeader.size() + 100),
                     "past the end");
  expect_parse_error(make_file(kValidHeader, kValidData, 0), "JSON");
  expect_parse_error(std::string("\x02\x00\x00", 3), "too small");
}

TEST(Safetensors, BadJson) {
  expect_parse_error(make_file("{not json", ""), "not valid JSON");
  expect_parse_error(make_file(R"({"a":{"dtype":"F32")", ""), "not valid JSON");
  expect_parse_error(make_file(std::string("{\"a\"\0:1}", 8), ""), "not valid JSON");
  expect_parse_error(make_file("[1, 2]", ""), "must be a JSON object");
  expect_parse_error(make_file(std::string(100000, '[') + std::string(100000, ']'), ""), "deeper");
  expect_parse_error(make_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__");
  expect_parse_error(make_file(R"({"__metadata__":[]})", ""), "__metadata__");
}

TEST(Safetensors, BadTensorEntries) {
  const std::string d8 = f32_bytes({1, 2});
  auto bad = [&](const std::string& entry, const std::string& needle) {
    SCOPED_TRACE(entry);
    expect_parse_error(make_file(tensor_header(entry), d8), needle);
  };
  bad(R"({"dtype":"F32","shape":[2],"data_offsets":[0,16]})", "past the data section");
  bad(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", "end before begin");
  bad(R"({"dtype":"F7","shape":[2],"data_offsets":[0,8]})", "unknown safetensors dtype 'F7'");
  bad(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", "need 12");
  bad(R"({"dtype":"F16","shape":[2],"data_offsets":[0,8]})", "need 4");
  bad(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", "negative");
  bad(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]})", "overflows");
  bad(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})", "too large");
  bad(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", "must be an integer");
  bad(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})", "must be an integer");
  bad(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", "'shape'");
  bad(R"({"shape":[2],"data_offsets":[0,8]})", "'dtype'");
  bad(R"({"dtype":32,"shape":[2],"data_offsets":[0,8]})", "'dtype'");
  bad(R"({"dtype":"F32","shape":[2]})", "data_offsets");
  bad(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4,8]})", "data_offsets");
  bad(R"({"dtype":"F32","shape":[2],"data_offsets":[-1,8]})", "negative");
  bad(R"([1])", "JSON object");
  // The message names the tensor.
  bad(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", "'t'");
}

TEST(Safetensors, OverlappingTensors) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_parse_error(make_file(h, f32_bytes({1, 2, 3})), "overlap");
}

TEST(Safetensors, ShardedCheckpointMatchesTransformers) {
  const json want = read_json(kDir + "tiny_expected.json")["tiny-llama"];
  const WeightMap w = load_safetensors_dir(kDir + "tiny-llama");
  ASSERT_EQ(w.size(), want.size());
  for (const auto& [name, s] : want.items()) {
    SCOPED_TRACE(name);
    auto it = w.find(name);
    ASSERT_NE(it, w.end());
    EXPECT_EQ(it->second.shape, s["shape"].get<std::vector<int64_t>>());
    double sum = 0, wsum = 0;
    for (size_t i = 0; i < it->second.data.size(); ++i) {
      sum += it->second.data[i];
      wsum += double(i) * it->second.data[i];
    }
    EXPECT_NEAR(sum, s["sum"].get<double>(), 1e-9 * (1 + std::abs(sum)));
    EXPECT_NEAR(wsum, s["weighted_sum"].get<double>(), 1e-9 * (1 + std::abs(wsum)));
    const auto first = s["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(double(it->second.data[i]), first[i]);
  }
}

// A missing file is NotFound; a malformed index or shard is InvalidArgument.
void expect_dir_error(const std::string& dir, const std::string& needle, ErrorKind kind) {
  try {
    load_safetensors_dir(dir);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(error_kind_name(e.kind()), std::string(error_kind_name(kind))) << e.what();
  }
}

TEST(Safetensors, ShardedIndexErrors) {
  const std::string idx = "model.safetensors.index.json";
  {
    ScratchDir d(kDir + "tiny-llama");
    fs::remove(d.file("model-00002-of-00004.safetensors"));
    expect_dir_error(d.str(), "model-00002-of-00004.safetensors", ErrorKind::NotFound);
  }
  {
    ScratchDir d(kDir + "tiny-llama");
    json j = read_json(d.file(idx));
    j["weight_map"]["model.norm.weight"] = "../model-00001-of-00004.safetensors";
    d.write(idx, j.dump());
    expect_dir_error(d.str(), "plain file name", ErrorKind::InvalidArgument);
  }
  {
    ScratchDir d(kDir + "tiny-llama");
    json j = read_json(d.file(idx));
    j["weight_map"]["model.extra.weight"] = "model-00001-of-00004.safetensors";
    d.write(idx, j.dump());
    expect_dir_error(d.str(), "model.extra.weight", ErrorKind::InvalidArgument);
  }
  {
    ScratchDir d(kDir + "tiny-llama");
    d.write(idx, "{\"weight_map\": ");
    expect_dir_error(d.str(), "not valid JSON", ErrorKind::InvalidArgument);
  }
  {
    ScratchDir d(kDir + "tiny-llama");
    d.write(idx, "{\"metadata\": {}}");
    expect_dir_error(d.str(), "weight_map", ErrorKind::InvalidArgument);
  }
  {
    ScratchDir d;
    expect_dir_error(d.str(), "neither model.safetensors", ErrorKind::NotFound);
  }
  {
    ScratchDir d(kDir + "tiny-qwen2");
    const std::string bytes = read_file(d.file("model.safetensors"));
    d.write("model.safetensors", bytes.substr(0, bytes.size() - 1));
    expect_dir_error(d.str(), "past the data section", ErrorKind::InvalidArgument);
  }
}

TEST(Safetensors, OpenErrors) {
  EXPECT_THROW(SafetensorsFile::open(kDir + "does_not_exist.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile::open(kDir + "tiny-llama"), Error);  // a directory
  ScratchDir d;
  d.write("empty.safetensors", "");
  EXPECT_THROW(SafetensorsFile::open(d.file("empty.safetensors")), Error);
}

}  // namespace
}  // namespace nc
