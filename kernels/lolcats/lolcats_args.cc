#include "kernels/lolcats/lolcats_args.h"

#include <ATen/ATen.h>

#include <tuple>

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/feature_map/hedgehog_grad.h"
#endif

namespace linearize::kernels::lolcats::internal {

detail::WindowSpec Spec(const Options& options) {
  return detail::WindowSpec{options.window, options.window_kind == WindowKind::kTerrace};
}

void CheckWeights(const char* op, const detail::QkvDims& dims, const at::Device& device,
                  const Weights& weights, const Options& options) {
  CheckFeatureMaps(op, weights.maps, dims.q_heads, dims.kv_heads, dims.head_dim);
  detail::CheckHeadParam(op, "window_logit", weights.window_logit, dims.q_heads, 0, device);
  TORCH_CHECK(options.window >= 1, op, ": window must be >= 1, got ", options.window);
  detail::CheckChunk(op, options.chunk);
}

Prepared Prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const Weights& weights, const Options& options,
                 std::optional<at::ScalarType> compute) {
  Prepared p;
  p.dims = detail::CheckQkv(op, q, k, v);
  CheckWeights(op, p.dims, q.device(), weights, options);
  const at::ScalarType ct = compute.value_or(detail::ComputeType(q.scalar_type()));
  p.q = q.to(ct);
  const at::Tensor kc = k.to(ct);
  p.k = detail::ExpandKvHeads(kc, p.dims.q_heads);
  p.v = detail::ExpandKvHeads(v.to(ct), p.dims.q_heads);
  const FeatureMaps& maps = weights.maps;
#ifdef LINEARIZE_WITH_CUDA
  if (compute == at::kBFloat16 && maps.kind == FeatureMapKind::kHedgehog) {
    if (auto qp = detail::HedgehogFeatureMapTrainCudaPassing(p.q, maps.q_weight)) {
      std::tie(p.phi_q, p.q_window) = *qp;
    }
    // The k map's input is k itself when its weights are per kv head (or there is no GQA).
    if (maps.k_weight.size(0) == p.dims.kv_heads) {
      if (auto kp = detail::HedgehogFeatureMapTrainCudaPassing(kc, maps.k_weight)) {
        p.phi_k = detail::ExpandKvHeads(kp->first, p.dims.q_heads);
        p.k_window = kp->second;
      }
    }
  }
#endif
  if (!p.phi_q.defined()) p.phi_q = QueryFeatures(maps, p.q);
  if (!p.phi_k.defined()) p.phi_k = KeyFeatures(maps, kc, p.dims.q_heads);
  const at::ScalarType gt = ct == at::kBFloat16 ? at::kFloat : ct;
  p.g = at::sigmoid(weights.window_logit.to(gt)).view({1, p.dims.q_heads, 1, 1});
  return p;
}

}  // namespace linearize::kernels::lolcats::internal
