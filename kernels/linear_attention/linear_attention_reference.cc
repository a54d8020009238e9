// The baseline's ground truth: the full [T, T] causal attention matrix
// A_ij = phi(q_i) . phi(k_j) (j <= i), normalised by its row sums.
#include <ATen/ATen.h>

#include "kernels/linear_attention/linear_attention.h"
#include "kernels/linear_attention/linear_attention_args.h"

namespace linearize::kernels::linear_attention {

namespace {

at::Tensor Weights(const internal::Prepared& p, const Options& options) {
  const int64_t t = p.dims.length;
  const at::Tensor causal = at::ones({t, t}, p.v.options().dtype(at::kBool)).tril();
  at::Tensor a = at::matmul(p.phi_q, p.phi_k.transpose(-1, -2));  // [B, Hq, T, T]
  a = at::where(causal, a, at::zeros_like(a));
  return a / (a.sum(-1, /*keepdim=*/true) + options.eps);
}

}  // namespace

at::Tensor ForwardReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps, const Options& options) {
  const internal::Prepared p =
      internal::Prepare("linear_attention::ForwardReference", q, k, v, maps, options);
  return at::matmul(Weights(p, options), p.v).to(q.scalar_type());
}

at::Tensor AttentionWeights(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps, const Options& options) {
  return Weights(internal::Prepare("linear_attention::AttentionWeights", q, k, v, maps, options),
                 options);
}

}  // namespace linearize::kernels::linear_attention
