#include "kernels/linear_attention/linear_attention_args.h"

#include <ATen/ATen.h>

namespace linearize::kernels::linear_attention::internal {

Prepared Prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const FeatureMaps& maps, const Options& options,
                 std::optional<at::ScalarType> compute) {
  Prepared p;
  p.dims = detail::CheckQkv(op, q, k, v);
  CheckFeatureMaps(op, maps, p.dims.q_heads, p.dims.kv_heads, p.dims.head_dim);
  detail::CheckChunk(op, options.chunk);
  TORCH_CHECK(options.eps >= 0, op, ": eps must be >= 0, got ", options.eps);
  const at::ScalarType ct = compute.value_or(detail::ComputeType(q.scalar_type()));
  p.phi_q = QueryFeatures(maps, q.to(ct));
  p.phi_k = KeyFeatures(maps, k.to(ct), p.dims.q_heads);
  p.v = detail::ExpandKvHeads(v.to(ct), p.dims.q_heads);
  return p;
}

void CheckState(const char* op, const State& state, const detail::QkvDims& dims, int64_t f,
                const at::Tensor& q) {
  TORCH_CHECK(state.kv.defined() && state.k_sum.defined(), op,
              ": state is empty; start from EmptyState or Prefill");
  TORCH_CHECK(state.kv.sizes() == at::IntArrayRef({dims.batch, dims.q_heads, f, dims.head_dim}),
              op, ": state.kv must be [", dims.batch, ", ", dims.q_heads, ", ", f, ", ",
              dims.head_dim, "], got ", state.kv.sizes());
  TORCH_CHECK(state.k_sum.sizes() == at::IntArrayRef({dims.batch, dims.q_heads, f}), op,
              ": state.k_sum must be [", dims.batch, ", ", dims.q_heads, ", ", f, "], got ",
              state.k_sum.sizes());
  TORCH_CHECK(state.kv.device() == q.device() && state.k_sum.device() == q.device(), op,
              ": state is on ", state.kv.device(), " but q is on ", q.device());
  TORCH_CHECK(at::isFloatingType(state.kv.scalar_type()) &&
                  state.k_sum.scalar_type() == state.kv.scalar_type(),
              op, ": state.kv and state.k_sum must share a floating dtype");
}

}  // namespace linearize::kernels::linear_attention::internal
