#include "kernels/lizard/lizard_args.h"

#include <ATen/ATen.h>

namespace linearize::kernels::lizard::internal {

const at::Tensor& WindowQ(const Inputs& in) { return in.q_window.defined() ? in.q_window : in.q; }
const at::Tensor& WindowK(const Inputs& in) { return in.k_window.defined() ? in.k_window : in.k; }

detail::QkvDims Check(const char* op, const Inputs& in, const Weights& weights,
                      const Options& options) {
  const detail::QkvDims dims = detail::CheckQkv(op, in.q, in.k, in.v);
  TORCH_CHECK(in.q_window.defined() == in.k_window.defined(), op,
              ": pass both q_window and k_window or neither");
  if (in.q_window.defined()) {
    TORCH_CHECK(in.q_window.sizes() == in.q.sizes() && in.k_window.sizes() == in.k.sizes(), op,
                ": q_window/k_window must have q's/k's shapes ", in.q.sizes(), " and ",
                in.k.sizes(), ", got ", in.q_window.sizes(), " and ", in.k_window.sizes());
    TORCH_CHECK(in.q_window.scalar_type() == in.q.scalar_type() &&
                    in.k_window.scalar_type() == in.q.scalar_type() &&
                    in.q_window.device() == in.q.device() && in.k_window.device() == in.q.device(),
                op, ": q_window/k_window must have q's dtype and device");
  }
  const at::Tensor& g = in.log_gamma;
  TORCH_CHECK(g.defined(), op, ": log_gamma must be defined");
  TORCH_CHECK(g.dim() == 3 && g.size(0) == dims.batch && g.size(2) == dims.length &&
                  (g.size(1) == dims.q_heads || g.size(1) == dims.kv_heads),
              op, ": log_gamma must be [", dims.batch, ", ", dims.q_heads, " or ", dims.kv_heads,
              ", ", dims.length, "], got ", g.sizes());
  TORCH_CHECK(at::isFloatingType(g.scalar_type()) && g.device() == in.q.device(), op,
              ": log_gamma must be floating point on q's device, got ", g.scalar_type(), " on ",
              g.device());
  // The values are checked where that costs no device sync: a sync per layer
  // per decode step would stall the GPU and cannot be captured in a graph
  // (the model's gates are log-sigmoids, <= 0 by construction).
  TORCH_CHECK(g.is_cuda() || g.numel() == 0 || g.max().item<double>() <= 0.0, op,
              ": log_gamma must be <= 0 (gates in (0, 1]), got max ", g.max().item<double>());
  CheckFeatureMaps(op, weights.maps, dims.q_heads, dims.kv_heads, dims.head_dim);
  const at::Tensor& m = weights.meta_logits;
  TORCH_CHECK(m.defined() && m.dim() == 2 && m.size(0) == dims.q_heads, op,
              ": meta_logits must be [", dims.q_heads, ", M], got ",
              m.defined() ? m.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(m.scalar_type()) && m.device() == in.q.device(), op,
              ": meta_logits must be floating point on q's device");
  detail::CheckHeadParam(op, "alpha", weights.alpha, dims.q_heads, 0, in.q.device());
  TORCH_CHECK(options.window >= 1, op, ": window must be >= 1, got ", options.window);
  detail::CheckChunk(op, options.chunk);
  TORCH_CHECK(options.eps >= 0, op, ": eps must be >= 0, got ", options.eps);
  return dims;
}

Prepared Prepare(const char* op, const Inputs& in, const Weights& weights, const Options& options,
                 std::optional<at::ScalarType> features) {
  Prepared p;
  p.dims = Check(op, in, weights, options);
  const int64_t hq = p.dims.q_heads;
  const at::ScalarType ct = detail::ComputeType(in.q.scalar_type());
  const at::ScalarType ft = features.value_or(ct);
  p.phi_q = QueryFeatures(weights.maps, in.q.to(ft));
  if (features) p.phi_k_kv = KeyFeaturesAtKvHeads(weights.maps, in.k.to(ft));
  p.phi_k = p.phi_k_kv.defined() ? detail::ExpandKvHeads(p.phi_k_kv, hq)
                                 : KeyFeatures(weights.maps, in.k.to(ft), hq);
  p.v = detail::ExpandKvHeads(in.v.to(ft), hq);
  p.log_gamma = detail::ExpandKvHeads(in.log_gamma.to(ct), hq);
  p.meta = weights.meta_logits.to(ct).view({1, hq, 1, weights.meta_logits.size(1)});
  p.alpha = weights.alpha.to(ct).view({1, hq, 1, 1});
  return p;
}

WindowQk ExpandWindowQk(const Inputs& in, int64_t q_heads) {
  const at::ScalarType ct = detail::ComputeType(in.q.scalar_type());
  return {WindowQ(in).to(ct), detail::ExpandKvHeads(WindowK(in).to(ct), q_heads)};
}

}  // namespace linearize::kernels::lizard::internal
