// The baseline's ground truth: the full [T, T] causal attention matrix
// A_ij = phi(q_i) . phi(k_j) (j <= i), normalised by its row sums.
#include <ATen/ATen.h>

#include "kernels/linear_attention/linear_attention.h"
#include "kernels/linear_attention/linear_attention_args.h"

namespace linearize::kernels::linear_attention {

at::Tensor ForwardReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps, const Options& options) {
  const internal::Prepared p =
      internal::Prepare("linear_attention::ForwardReference", q, k, v, maps, options);
  const int64_t t = p.dims.length;
  const at::Tensor causal = at::ones({t, t}, q.options().dtype(at::kBool)).tril();
  at::Tensor a = at::matmul(p.phi_q, p.phi_k.transpose(-1, -2));  // [B, Hq, T, T]
  a = at::where(causal, a, at::zeros_like(a));
  const at::Tensor y = at::matmul(a, p.v) / (a.sum(-1, /*keepdim=*/true) + options.eps);
  return y.to(q.scalar_type());
}

}  // namespace linearize::kernels::linear_attention
