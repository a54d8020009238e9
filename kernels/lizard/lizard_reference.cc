// Lizard ground truth: both branches from full [T, T] matrices. Gated decay
// weights exp(sum of the log gates between j and i) never exceed 1.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lizard/lizard_args.h"

namespace linearize::kernels::lizard {

namespace {

// y = (gated weights) v + alpha (window weights) v, as one matrix.
at::Tensor Combined(const internal::Prepared& p, const internal::WindowQk& w,
                    const Options& options) {
  const int64_t t = p.dims.length;
  const auto pos = at::arange(t, p.v.options().dtype(at::kLong));
  const at::Tensor i = pos.view({t, 1});
  const at::Tensor j = pos.view({1, t});
  const at::Tensor causal = j <= i;
  const at::Tensor zero = at::zeros({}, p.v.options());

  // Gated branch.
  // decay_ij = exp(sum_{j < s <= i} log_gamma_s), summed directly (no
  // difference of cumulative sums), exponentiated only where j <= i.
  const at::Tensor after_j = i > j;                                          // [s, j]: s > j
  const at::Tensor rows = p.log_gamma.unsqueeze(-1).expand({-1, -1, t, t});  // [.., s, j] = a_s
  const at::Tensor seg = at::where(after_j, rows, zero).cumsum(-2);
  const at::Tensor decay = at::where(causal, at::exp(at::where(causal, seg, zero)), zero);
  const at::Tensor a = at::matmul(p.phi_q, p.phi_k.transpose(-1, -2)) * decay;
  const at::Tensor w_gla = a / (a.sum(-1, /*keepdim=*/true) + options.eps);

  // Window branch with sinks.
  const detail::WindowSpec spec{options.window, /*terrace=*/false};
  const at::Tensor window = at::logical_and(j >= spec.Start(i), causal);
  const at::Tensor s = at::matmul(w.q, w.k.transpose(-1, -2)) / std::sqrt(double(p.dims.head_dim));
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor meta = p.meta.expand({s.size(0), s.size(1), t, p.meta.size(3)});
  const at::Tensor c =
      at::amax(at::cat({at::where(window, s, neg_inf), meta}, -1), {-1}, /*keepdim=*/true).detach();
  const at::Tensor e = at::where(window, at::exp(at::where(window, s, zero) - c), zero);
  const at::Tensor den = e.sum(-1, /*keepdim=*/true) + at::exp(meta - c).sum(-1, /*keepdim=*/true);
  return w_gla + p.alpha * (e / den);
}

}  // namespace

at::Tensor ForwardReference(const Inputs& in, const Weights& weights, const Options& options) {
  const internal::Prepared p = internal::Prepare("lizard::ForwardReference", in, weights, options);
  const internal::WindowQk w = internal::ExpandWindowQk(in, p.dims.q_heads);
  return at::matmul(Combined(p, w, options), p.v).to(in.q.scalar_type());
}

at::Tensor AttentionWeights(const Inputs& in, const Weights& weights, const Options& options) {
  const internal::Prepared p = internal::Prepare("lizard::AttentionWeights", in, weights, options);
  return Combined(p, internal::ExpandWindowQk(in, p.dims.q_heads), options);
}

}  // namespace linearize::kernels::lizard
