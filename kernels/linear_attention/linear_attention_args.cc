#include "kernels/linear_attention/linear_attention_args.h"

#include <ATen/ATen.h>

namespace linearize::kernels::linear_attention::internal {

Prepared Prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const FeatureMaps& maps, const Options& options) {
  Prepared p;
  p.dims = detail::CheckQkv(op, q, k, v);
  CheckFeatureMaps(op, maps, p.dims.q_heads, p.dims.kv_heads, p.dims.head_dim);
  detail::CheckChunk(op, options.chunk);
  TORCH_CHECK(options.eps >= 0, op, ": eps must be >= 0, got ", options.eps);
  const at::ScalarType ct = detail::ComputeType(q.scalar_type());
  p.phi_q = QueryFeatures(maps, q.to(ct));
  p.phi_k = KeyFeatures(maps, k.to(ct), p.dims.q_heads);
  p.v = detail::ExpandKvHeads(v.to(ct), p.dims.q_heads);
  return p;
}

}  // namespace linearize::kernels::linear_attention::internal
