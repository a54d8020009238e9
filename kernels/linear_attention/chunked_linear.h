// The chunked (parallel) form of causal, optionally gated, linear attention:
// the one algorithm under the baseline, LoLCATs' linear part and Lizard's
// gated branch. Internal to kernels/; callers pass features already expanded
// to the query heads and in the compute dtype.
//
// For each query i (0-based) it returns the unnormalised sums
//   num_i = sum_{j<=i} w_ij (phi_q_i . phi_k_j) v_j      [D]
//   den_i = sum_{j<=i} w_ij (phi_q_i . phi_k_j)          scalar
// with w_ij = 1 (ungated) or w_ij = exp(sum_{s=j+1..i} log_gamma_s) (gated),
// and the state after the last token:
//   kv = sum_j w_{T-1,j} phi_k_j v_j^T  [F, D],   k_sum = sum_j w_{T-1,j} phi_k_j  [F].
//
// Algorithm, chunk size C (the last chunk zero-padded; padded keys are zero
// and padded gates are 0, so they change nothing):
//   b_t  = cumsum of log_gamma inside the chunk (b_t <= 0, decreasing)
//   intra: A_ij = (phi_q_i . phi_k_j) exp(b_i - b_j) for j <= i (else 0)
//   inter: num_i += exp(b_i) phi_q_i S_prev,  den_i += exp(b_i) phi_q_i . z_prev
//   state: S = exp(b_last) S_prev + sum_j exp(b_last - b_j) phi_k_j v_j^T (z alike)
// Every exponent is <= 0, so strong decays (log_gamma ~ -20 or below) underflow
// towards 0 instead of overflowing; no exp(-cumulative) is ever formed. The
// relative exponents b_i - b_j and b_last - b_j are summed directly over the
// gates between j and i (segment sums), never subtracted, so they lose no
// precision to cancellation and a gate of exactly 0 (log_gamma = -inf, a state
// reset) gives 0, not NaN. The recurrence over chunks is a loop (gated) or an
// exclusive cumsum (ungated).
// Memory O(T * (C + F)) plus one [F, D] state per chunk; differentiable.
// With CUDA, when autograd records from the empty state in bfloat16 (or
// float32 under CUDA autocast), it runs as the CUDA forward and backward
// kernels instead (chunked_linear_grad.h); num is bfloat16 and den float32
// then.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace linearize::kernels::detail {

struct LinearTerms {
  at::Tensor num;    // [B, H, T, D]
  at::Tensor den;    // [B, H, T]
  at::Tensor kv;     // [B, H, F, D] state after the last token
  at::Tensor k_sum;  // [B, H, F]
  // The training kernels' v passed through when asked (chunked_linear_grad.h).
  at::Tensor v_pass = at::Tensor();
};

// phi_q, phi_k: [B, H, T, F]; v: [B, H, T, D]; log_gamma: [B, H, T] (<= 0) or
// undefined for no gate. T >= 1, chunk >= 1.
// kv0 [B, H, F, D], k_sum0 [B, H, F] (both or neither, phi_q's dtype): the
// state before the first token, i.e. the sums over earlier keys. It is one
// more key block in front: query i also reads w_{i,-1} phi_q_i . kv0 (and
// k_sum0), w_{i,-1} = exp(sum_{s=0..i} log_gamma_s) (1 ungated), and the
// returned state carries it on. Undefined: the empty state.
LinearTerms ChunkedCausalLinear(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                const at::Tensor& v, const at::Tensor& log_gamma, int64_t chunk,
                                const at::Tensor& kv0 = {}, const at::Tensor& k_sum0 = {});

}  // namespace linearize::kernels::detail
