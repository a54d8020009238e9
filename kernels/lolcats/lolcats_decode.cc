// LoLCATs recurrent form, one token per row. Per step, for a row at position i:
//  1. keys in [Start(i - 1), Start(i)) leave the window: their phi(k) v^T and
//     phi(k) join the linear state (1 key per step for sliding windows; a
//     whole W-block at block boundaries for terrace). They are read from the
//     ring before step 2 can overwrite them (Start(i) > i - Wb).
//  2. k_i, v_i go to ring slot i % Wb.
//  3. y_i = (g sum_win exp(s - c) v + phi(q) S) / (g sum_win exp(s - c) + phi(q) . z)
//     over the slots holding positions Start(i)..i, c their max score.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>

#include "kernels/linear_attention/hybrid_state.h"
#include "kernels/lolcats/lolcats_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/lolcats/lolcats_cuda.h"
#endif

namespace linearize::kernels::lolcats {

State EmptyState(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t feature_dim,
                 int64_t head_dim, const Options& lolcats_options, at::TensorOptions options) {
  return detail::EmptyHybridState<State>(batch, q_heads, kv_heads, feature_dim, head_dim,
                                         WindowSlots(lolcats_options), options);
}

at::Tensor DecodeStep(State& state, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const Weights& weights, const Options& options) {
  constexpr const char* kOp = "lolcats::DecodeStep";
  const detail::QkvDims dims = detail::CheckQkv(kOp, q, k, v);
  TORCH_CHECK(dims.length == 1, kOp, ": decodes one token, q must be [B, Hq, 1, D], got ",
              q.sizes());
  internal::CheckWeights(kOp, dims, q.device(), weights, options);
  const detail::WindowSpec spec = internal::Spec(options);
  const int64_t slots = spec.Buffer();
  detail::CheckHybridState(kOp, state, dims, FeatureDim(weights.maps, dims.head_dim), slots, q);

#ifdef LINEARIZE_WITH_CUDA
  // Batched decode kernels (lolcats_decode_cuda.cu) for the inputs they cover.
  if (std::optional<at::Tensor> y = internal::DecodeStepCuda(state, q, k, v, weights, options)) {
    return *y;
  }
#endif
  const c10::NoGradGuard no_grad;
  const at::ScalarType ct = state.kv.scalar_type();
  const int64_t b = dims.batch, hq = dims.q_heads;
  const at::Tensor& pos = state.position;  // [B]
  const at::Tensor start = spec.Start(pos);

  // 1. Evict what leaves the window into the linear state.
  const int64_t most = spec.terrace ? spec.size : 1;               // keys leaving per step, at most
  const at::Tensor leave_from = spec.Start(pos - 1).unsqueeze(1);  // [B, 1]
  const at::Tensor leaving = leave_from + at::arange(most, pos.options()).unsqueeze(0);  // [B, E]
  const at::Tensor leaves = leaving < start.unsqueeze(1);
  if (leaves.any().item<bool>()) {
    const at::Tensor ring_slots = at::remainder(leaving, slots);
    const at::Tensor keep = leaves.to(ct).view({b, 1, most, 1});
    const at::Tensor phi =
        KeyFeatures(weights.maps, detail::RingGather(state.k_window, ring_slots).to(ct), hq) * keep;
    const at::Tensor vals =
        detail::ExpandKvHeads(detail::RingGather(state.v_window, ring_slots).to(ct), hq);
    state.kv.add_(at::matmul(phi.transpose(-1, -2), vals));
    state.k_sum.add_(phi.sum(2));
  }
  // 2. Write the new key and value.
  detail::RingWrite(state.k_window, pos, k);
  detail::RingWrite(state.v_window, pos, v);
  // 3. Attend: window softmax terms plus the linear state, one normaliser.
  const at::Tensor qc = q.to(ct);
  const at::Tensor s =
      detail::RingScores(qc, state.k_window, 1.0 / std::sqrt(double(dims.head_dim)));  // [B,Hq,1,S]
  const at::Tensor valid =
      (detail::RingSlotPositions(pos, slots) >= start.unsqueeze(1)).view({b, 1, 1, slots});
  const at::Tensor neg_inf = at::full({}, -std::numeric_limits<double>::infinity(), s.options());
  const at::Tensor zero = at::zeros({}, s.options());
  const at::Tensor c = at::amax(at::where(valid, s, neg_inf), {-1}, /*keepdim=*/true);
  const at::Tensor g = at::sigmoid(weights.window_logit.to(ct)).view({1, hq, 1, 1});
  const at::Tensor a = g * at::where(valid, at::exp(at::where(valid, s, zero) - c), zero);
  const at::Tensor phi_q = QueryFeatures(weights.maps, qc);  // [B, Hq, 1, F]
  const at::Tensor num = detail::RingValues(a, state.v_window) + at::matmul(phi_q, state.kv);
  const at::Tensor den = a.sum(-1, /*keepdim=*/true) + at::matmul(phi_q, state.k_sum.unsqueeze(-1));
  state.position.add_(1);
  return (num / den).to(q.scalar_type());
}

}  // namespace linearize::kernels::lolcats
