// FP8 weights at load (contract: model/fp8_load.h).
#include "model/fp8_load.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "formats/gguf.h"

namespace nc {
namespace {

const HostTensor* find(const WeightMap& w, const std::string& name) {
  auto it = w.find(name);
  return it == w.end() ? nullptr : &it->second;
}

// "...q_proj.weight" -> "...q_proj.<suffix>"
std::string sibling(const std::string& name, const char* suffix) {
  return name.substr(0, name.size() - std::string(".weight").size()) + "." + suffix;
}

std::vector<float> float_values(const HostTensor& t, const std::string& name) {
  NC_CHECK_AS(ErrorKind::InvalidArgument, t.dtype != DType::F8E4M3,
              "fp8: scale tensor '{}' must be a float tensor, not F8_E4M3", name);
  return t.is_raw() ? dequantized(t).data : t.data;
}

// The per-row scales of a stored FP8 weight [out, in] from its weight_scale tensor.
std::vector<float> row_scales(const WeightMap& w, const std::string& name, int64_t out,
                              int64_t in) {
  const std::string sname = sibling(name, "weight_scale");
  const HostTensor* s = find(w, sname);
  NC_CHECK_AS(ErrorKind::InvalidArgument, s != nullptr,
              "fp8: weight '{}' is stored as F8_E4M3 but its scale '{}' is missing", name, sname);
  const Shape& sh = s->shape;
  const bool per_tensor = s->numel() == 1 && sh.size() <= 1;
  const bool per_row = (sh == Shape{out}) || (sh == Shape{out, 1});
  if (!per_tensor && !per_row) {
    const bool blocks = sh.size() == 2 && sh[0] == (out + 127) / 128 && sh[1] == (in + 127) / 128;
    fail_as(blocks ? ErrorKind::Unsupported : ErrorKind::InvalidArgument,
            "fp8: scale '{}' has shape {}{}; expected a scalar, [1], [{}] or [{}, 1]", sname,
            shape_str(sh), blocks ? " (block-wise 128x128 scales are not supported)" : "", out,
            out);
  }
  std::vector<float> v = float_values(*s, sname);
  if (per_tensor) v.assign(size_t(out), v.at(0));
  return v;
}

float input_scale(const WeightMap& w, const std::string& name) {
  const std::string iname = sibling(name, "input_scale");
  const HostTensor* s = find(w, iname);
  if (s == nullptr) return 0;
  NC_CHECK_AS(ErrorKind::InvalidArgument, s->numel() == 1 && s->shape.size() <= 1,
              "fp8: input scale '{}' has shape {}; expected a scalar or [1] (per-tensor static)",
              iname, shape_str(s->shape));
  const float v = float_values(*s, iname).at(0);
  NC_CHECK_AS(ErrorKind::InvalidArgument, std::isfinite(v) && v > 0,
              "fp8: input scale '{}' is {}, expected a finite positive number", iname, v);
  return v;
}

}  // namespace

bool is_fp8_linear_name(const std::string& name) {
  static const char* kSuffixes[] = {
      ".self_attn.q_proj.weight",   ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
      ".self_attn.qkv_proj.weight", ".self_attn.o_proj.weight", ".mlp.gate_proj.weight",
      ".mlp.up_proj.weight",        ".mlp.gate_up_proj.weight", ".mlp.down_proj.weight"};
  return name.starts_with("model.layers.") &&
         std::any_of(std::begin(kSuffixes), std::end(kSuffixes),
                     [&](const char* s) { return name.ends_with(s); });
}

Fp8Weight fp8_weight_from(const WeightMap& w, const std::string& name, const Shape& shape) {
  const HostTensor* t = find(w, name);
  NC_CHECK_AS(ErrorKind::InvalidArgument, t != nullptr, "model: missing tensor '{}'", name);
  NC_CHECK_AS(ErrorKind::InvalidArgument, t->shape == shape && shape.size() == 2,
              "model: tensor '{}' has shape {}, expected {}", name, shape_str(t->shape),
              shape_str(shape));
  if (t->dtype != DType::F8E4M3) return quantize_fp8_weight(t->is_raw() ? dequantized(*t) : *t);
  Fp8Weight q;
  q.rows = shape[0], q.cols = shape[1];
  NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(t->raw.size()) == q.rows * q.cols,
              "fp8: weight '{}' holds {} bytes for shape {}", name, t->raw.size(),
              shape_str(shape));
  q.codes = t->raw;
  q.scales = row_scales(w, name, q.rows, q.cols);
  q.input_scale = input_scale(w, name);
  check_fp8_weight(q, name.c_str());
  return q;
}

Fp8Weight stack_fp8_weights(const std::vector<Fp8Weight>& parts) {
  NC_CHECK(!parts.empty(), "fp8: nothing to stack");
  Fp8Weight out;
  out.cols = parts.front().cols;
  for (const Fp8Weight& p : parts) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, p.cols == out.cols,
                "fp8: fused parts have {} and {} columns", out.cols, p.cols);
    NC_CHECK_AS(ErrorKind::InvalidArgument, (p.input_scale > 0) == (parts[0].input_scale > 0),
                "fp8: fused parts mix static and dynamic activation scales");
    out.rows += p.rows;
    out.codes.insert(out.codes.end(), p.codes.begin(), p.codes.end());
    out.scales.insert(out.scales.end(), p.scales.begin(), p.scales.end());
    out.input_scale = std::max(out.input_scale, p.input_scale);
  }
  return out;
}

}  // namespace nc
