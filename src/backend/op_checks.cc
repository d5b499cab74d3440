// Shared argument rules of the backends (op_checks.h).
#include "backend/op_checks.h"

#include "core/error.h"

namespace nc {

QkvWidths check_qkv_split_shapes(const Tensor& qkv, const Tensor& q_norm, const Tensor& k_norm,
                                 const Tensor& positions, const Tensor& cos_sin, int head_dim,
                                 const Tensor& q, const Tensor& k, const Tensor& v) {
  const char* what = "qkv_split_norm_rope";
  const int64_t T = positions.numel(), D = head_dim;
  NC_CHECK(cos_sin.ndim() == 2 && cos_sin.dim(1) == D,
           "{}: cos/sin table {} does not have {} columns", what, shape_str(cos_sin.shape()), D);
  const int64_t QW = q.dim(-1), KW = k.dim(-1);
  NC_CHECK(QW % D == 0 && KW % D == 0, "{}: q {} / k {} are not heads of {}", what,
           shape_str(q.shape()), shape_str(k.shape()), D);
  q.expect_shape({T, QW}, "qkv_split_norm_rope q");
  k.expect_shape({T, KW}, "qkv_split_norm_rope k");
  v.expect_shape({T, KW}, "qkv_split_norm_rope v");
  qkv.expect_shape({T, QW + 2 * KW}, "qkv_split_norm_rope qkv");
  for (const Tensor* w : {&q_norm, &k_norm})
    if (w->defined()) w->expect_shape({D}, "qkv_split_norm_rope norm weight");
  return {QW, KW};
}

void check_token_bitmask(const Tensor& logits, const Tensor& bitmask) {
  logits.expect_dtype(DType::F32, "apply_token_bitmask logits");
  bitmask.expect_dtype(DType::I32, "apply_token_bitmask bitmask");
  NC_CHECK(logits.ndim() == 2, "apply_token_bitmask: logits {} are not [rows, vocab]",
           shape_str(logits.shape()));
  bitmask.expect_shape({logits.dim(0), (logits.dim(1) + 31) / 32}, "apply_token_bitmask bitmask");
}

}  // namespace nc
