// Lizard recurrent form, one token per row at position i:
//   S = gamma S + phi(k) v^T, z = gamma z + phi(k); y_gla = phi(q) S / (phi(q) . z + eps)
//   k_window/v_window slot i % W <- kw_i, v_i; window softmax over the slots
//   holding positions max(0, i - W + 1)..i plus the sink logits;
//   y = y_gla + alpha y_win.
// CUDA tensors take the batched decode kernels (lizard_cuda.h) when they apply.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>
#include <optional>

#include "kernels/linear_attention/hybrid_state.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lizard/lizard_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/lizard/lizard_cuda.h"
#endif

namespace linearize::kernels::lizard {

State EmptyState(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t feature_dim,
                 int64_t head_dim, const Options& lizard_options, at::TensorOptions options) {
  return detail::EmptyHybridState<State>(batch, q_heads, kv_heads, feature_dim, head_dim,
                                         lizard_options.window, options);
}

at::Tensor DecodeStep(State& state, const Inputs& in, const Weights& weights,
                      const Options& options) {
  constexpr const char* kOp = "lizard::DecodeStep";
  const detail::QkvDims dims = internal::Check(kOp, in, weights, options);
  TORCH_CHECK(dims.length == 1, kOp, ": decodes one token, q must be [B, Hq, 1, D], got ",
              in.q.sizes());
  const int64_t slots = options.window;
  detail::CheckHybridState(kOp, state, dims, FeatureDim(weights.maps, dims.head_dim), slots, in.q);

#ifdef LINEARIZE_WITH_CUDA
  // Batched decode kernels (lizard_decode_cuda.cu) for the inputs they cover.
  if (std::optional<at::Tensor> y = internal::DecodeStepCuda(state, in, weights, options)) {
    return *y;
  }
#endif
  const c10::NoGradGuard no_grad;
  const at::ScalarType ct = state.kv.scalar_type();
  const int64_t b = dims.batch, hq = dims.q_heads;
  // Gated branch.
  const at::Tensor gamma = at::exp(detail::ExpandKvHeads(in.log_gamma.to(ct), hq));  // [B, Hq, 1]
  const at::Tensor phi_q = QueryFeatures(weights.maps, in.q.to(ct));    // [B, Hq, 1, F]
  const at::Tensor phi_k = KeyFeatures(weights.maps, in.k.to(ct), hq);  // [B, Hq, 1, F]
  const at::Tensor vv = detail::ExpandKvHeads(in.v.to(ct), hq);         // [B, Hq, 1, D]
  state.kv.mul_(gamma.unsqueeze(-1)).add_(at::matmul(phi_k.transpose(-1, -2), vv));
  state.k_sum.mul_(gamma).add_(phi_k.squeeze(2));
  const at::Tensor y_gla =
      at::matmul(phi_q, state.kv) / (at::matmul(phi_q, state.k_sum.unsqueeze(-1)) + options.eps);
  // Window branch.
  const at::Tensor& pos = state.position;
  detail::RingWrite(state.k_window, pos, internal::WindowK(in));
  detail::RingWrite(state.v_window, pos, in.v);
  const detail::WindowSpec spec{options.window, false};
  const at::Tensor s = detail::RingScores(internal::WindowQ(in).to(ct), state.k_window,
                                          1.0 / std::sqrt(double(dims.head_dim)));  // [B,Hq,1,W]
  const at::Tensor valid = (detail::RingSlotPositions(pos, slots) >= spec.Start(pos).unsqueeze(1))
                               .view({b, 1, 1, slots});
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor meta = weights.meta_logits.to(ct)
                              .view({1, hq, 1, weights.meta_logits.size(1)})
                              .expand({b, hq, 1, weights.meta_logits.size(1)});
  const at::Tensor c =
      at::amax(at::cat({at::where(valid, s, neg_inf), meta}, -1), {-1}, /*keepdim=*/true);
  const at::Tensor e = at::where(valid, at::exp(at::where(valid, s, zero) - c), zero);
  const at::Tensor den = e.sum(-1, /*keepdim=*/true) + at::exp(meta - c).sum(-1, /*keepdim=*/true);
  const at::Tensor y_win = detail::RingValues(e, state.v_window) / den;
  state.position.add_(1);
  const at::Tensor alpha = weights.alpha.to(ct).view({1, hq, 1, 1});
  return (y_gla + alpha * y_win).to(in.q.scalar_type());
}

}  // namespace linearize::kernels::lizard
