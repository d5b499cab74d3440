#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/error.h"

namespace nc {

namespace {

void apply_llama3(const RopeScaling& rs, std::vector<float>& inv) {
  const double old_len = double(rs.original_max_position);
  const double low_wavelen = old_len / rs.low_freq_factor,
               high_wavelen = old_len / rs.high_freq_factor;
  for (float& f : inv) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_wavelen) {
      f = float(f / rs.factor);
    } else if (wavelen >= high_wavelen) {  // between the two: interpolate
      const double smooth =
          (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      f = float((1.0 - smooth) * f / rs.factor + smooth * f);
    }
  }
}

// YaRN (transformers' _compute_yarn_parameters, float32 like it): each frequency blends the
// interpolated one (inv / factor) and the extrapolated one (inv) by a linear ramp over the
// dimensions between the correction dimensions of beta_fast and beta_slow rotations.
void apply_yarn(const RopeScaling& rs, int64_t D, double theta, std::vector<float>& inv) {
  const double two_pi = 2.0 * std::numbers::pi, orig = double(rs.original_max_position);
  auto correction_dim = [&](double rotations) {
    return double(D) * std::log(orig / (rotations * two_pi)) / (2.0 * std::log(theta));
  };
  double low = correction_dim(rs.beta_fast), high = correction_dim(rs.beta_slow);
  if (rs.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, double(D - 1));
  if (low == high) high += 0.001;  // transformers: no zero-width ramp
  for (size_t i = 0; i < inv.size(); ++i) {
    const float pos_freq = std::pow(float(theta), float(2 * i) / float(D));
    const float ramp = std::clamp((float(i) - float(low)) / float(high - low), 0.0f, 1.0f);
    const float extrapolation = 1.0f - ramp;
    const float interp = 1.0f / (float(rs.factor) * pos_freq), extra = 1.0f / pos_freq;
    inv[i] = interp * (1.0f - extrapolation) + extra * extrapolation;
  }
}

// Inverse frequencies as Hugging Face computes them (float32), with rope scaling applied.
std::vector<float> inverse_frequencies(int64_t D, double theta, const RopeScaling& rs,
                                       int64_t max_position) {
  std::vector<float> inv(D / 2);
  for (int64_t i = 0; i < D / 2; ++i)
    inv[i] = 1.0f / std::pow(float(theta), float(2 * i) / float(D));
  if (rs.type == "linear") {
    for (float& f : inv) f = f / float(rs.factor);
  } else if (rs.type == "llama3") {
    apply_llama3(rs, inv);
  } else if (rs.type == "longrope") {
    const std::vector<double>& ext =
        max_position > rs.original_max_position ? rs.long_factor : rs.short_factor;
    NC_CHECK_AS(ErrorKind::InvalidArgument, int64_t(ext.size()) == D / 2,
                "model: longrope has {} factors for head_dim {}", ext.size(), D);
    for (int64_t i = 0; i < D / 2; ++i)
      inv[i] = 1.0f / (float(ext[i]) * std::pow(float(theta), float(2 * i) / float(D)));
  } else if (rs.type == "yarn") {
    apply_yarn(rs, D, theta, inv);
  } else {
    NC_CHECK_AS(ErrorKind::Unsupported, rs.type == "none" || rs.type == "default",
                "model: unsupported rope scaling '{}'", rs.type);
  }
  return inv;
}

}  // namespace

double longrope_attention_factor(const ModelConfig& cfg) {
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.attention_factor > 0) return rs.attention_factor;
  const double s = double(cfg.max_position) / double(rs.original_max_position);
  if (s <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(s) / std::log(double(rs.original_max_position)));
}

double yarn_attention_factor(const RopeScaling& rs) {
  if (rs.attention_factor > 0) return rs.attention_factor;
  auto mscale = [&](double m) {
    return rs.factor <= 1 ? 1.0 : 0.1 * m * std::log(rs.factor) + 1.0;
  };
  if (rs.mscale != 0 && rs.mscale_all_dim != 0)
    return mscale(rs.mscale) / mscale(rs.mscale_all_dim);
  return mscale(1.0);
}

std::vector<float> rope_inverse_frequencies(const ModelConfig& cfg, bool sliding) {
  const bool own = sliding && cfg.sliding_rope_theta > 0;  // Gemma 3's local rope
  const RopeScaling none;
  return inverse_frequencies(cfg.head_dim, own ? cfg.sliding_rope_theta : cfg.rope_theta,
                             own ? none : cfg.rope_scaling, cfg.served_positions());
}

void check_rope_position_shift(const ModelConfig& cfg) {
  NC_CHECK_AS(ErrorKind::Unsupported, !cfg.mla.enabled(),
              "streaming window: MLA's latent KV cache ({}) cannot move its keys' positions",
              cfg.architecture);
  const std::string& t = cfg.rope_scaling.type;
  NC_CHECK_AS(ErrorKind::Unsupported,
              t == "none" || t == "default" || t == "linear" || t == "llama3" || t == "longrope" ||
                  t == "yarn",
              "streaming window: rope scaling '{}' is not known to move keys by a pure rotation",
              t);
}

HostTensor rope_cos_sin_table(const ModelConfig& cfg, int64_t max_pos, bool sliding) {
  const int64_t D = cfg.head_dim, half = D / 2;
  const bool own = sliding && cfg.sliding_rope_theta > 0;  // Gemma 3's local rope
  const RopeScaling none;
  const RopeScaling& rs = own ? none : cfg.rope_scaling;
  const std::vector<float> inv = rope_inverse_frequencies(cfg, sliding);
  const float mult = rs.type == "longrope" ? float(longrope_attention_factor(cfg))
                     : rs.type == "yarn"   ? float(yarn_attention_factor(rs))
                                           : 1.0f;
  HostTensor t{{max_pos, D}, std::vector<float>(max_pos * D)};
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * inv[i];  // float32 product, as HF
      t.data[p * D + i] = float(std::cos(double(angle))) * mult;
      t.data[p * D + half + i] = float(std::sin(double(angle))) * mult;
    }
  }
  return t;
}

}  // namespace nc
