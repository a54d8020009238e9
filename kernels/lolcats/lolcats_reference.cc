// LoLCATs ground truth: the full [T, T] score matrix split into a window part
// (softmax terms g exp(s - c)) and a linear part (phi(q) . phi(k)), one
// normaliser. Mirrors hybrid_attention_quadratic of the LoLCATs code.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "kernels/lolcats/lolcats_args.h"

namespace linearize::kernels::lolcats {

namespace {

at::Tensor Normalised(const internal::Prepared& p, const Options& options) {
  const int64_t t = p.dims.length;
  const auto pos = at::arange(t, p.v.options().dtype(at::kLong));
  const at::Tensor i = pos.view({t, 1});
  const at::Tensor j = pos.view({1, t});
  const at::Tensor start = internal::Spec(options).Start(i);
  const at::Tensor window = at::logical_and(j >= start, j <= i);  // [T, T]
  const at::Tensor linear = j < start;

  const at::Tensor s = at::matmul(p.q, p.k.transpose(-1, -2)) / std::sqrt(double(p.dims.head_dim));
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor c = at::amax(at::where(window, s, neg_inf), {-1}, /*keepdim=*/true);
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor a_win = p.g * at::where(window, at::exp(at::where(window, s, zero) - c), zero);
  const at::Tensor a_lin = at::where(linear, at::matmul(p.phi_q, p.phi_k.transpose(-1, -2)), zero);
  const at::Tensor a = a_win + a_lin;
  return a / a.sum(-1, /*keepdim=*/true);
}

}  // namespace

at::Tensor ForwardReference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Weights& weights, const Options& options) {
  const internal::Prepared p =
      internal::Prepare("lolcats::ForwardReference", q, k, v, weights, options);
  return at::matmul(Normalised(p, options), p.v).to(q.scalar_type());
}

at::Tensor AttentionWeights(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Weights& weights, const Options& options) {
  return Normalised(internal::Prepare("lolcats::AttentionWeights", q, k, v, weights, options),
                    options);
}

}  // namespace linearize::kernels::lolcats
