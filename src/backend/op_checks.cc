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

KvCopyGeometry check_kv_page_copies(const std::vector<Tensor>& layers,
                                    std::span<const KVPageCopy> copies, const HostBuffer& host) {
  NC_CHECK(!layers.empty(), "copy_kv_pages: no KV layers");
  KvCopyGeometry g;
  g.num_layers = int64_t(layers.size());
  g.num_pages = layers[0].shape()[0];
  g.layer_page_bytes = int64_t(layers[0].nbytes()) / g.num_pages;
  for (const Tensor& t : layers) {
    t.expect_contiguous("copy_kv_pages");
    NC_CHECK(t.shape()[0] == g.num_pages && int64_t(t.nbytes()) == g.layer_page_bytes * g.num_pages,
             "copy_kv_pages: layers of different shapes");
  }
  const int64_t host_pages = host.bytes() / (g.layer_page_bytes * g.num_layers);
  for (const KVPageCopy& c : copies)
    NC_CHECK(c.device_page >= 0 && c.device_page < g.num_pages && c.host_page >= 0 &&
                 c.host_page < host_pages,
             "copy_kv_pages: device page {} (of {}) or host page {} (of {}) out of range",
             c.device_page, g.num_pages, c.host_page, host_pages);
  return g;
}

}  // namespace nc
