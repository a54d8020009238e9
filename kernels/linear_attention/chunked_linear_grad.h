// Autograd for detail::ChunkedCausalLinear on the CUDA kernels: the forward
// kernel (chunked_linear_cuda.cu) and the backward kernels
// (chunked_linear_bwd_cuda.cu) as one differentiable op. Training and
// attention transfer on the GPU go through it. Compiled only with
// LINEARIZE_WITH_CUDA. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/linear_attention/chunked_linear.h"

namespace linearize::kernels::detail {

// ChunkedCausalLinear from the empty state with gradients for phi_q, phi_k,
// v and log_gamma (num and den are differentiable; kv and k_sum are not).
// Runs when autograd needs it (grad mode on and an input requires grad) and
// the kernels cover the inputs: CUDA, bfloat16, or float32 under CUDA autocast
// (computed in bfloat16 then, as autocast's matmuls are), F and D in {64,
// 128}. num comes back in bfloat16 (the kernels round it there for their
// products anyway, and its gradient the same: half the bytes both ways), den
// in float32 (gradients in the inputs' dtypes).
// Otherwise nullopt, and the caller takes the LibTorch form.
// key_delay > 0 (ungated only) delays the keys and values by that many
// positions inside the kernels (query i reads keys j <= i - key_delay), as
// LoLCATs' linear part needs, with no shifted copies of phi_k and v.
// pass_v: LinearTerms::v_pass is v itself, for a second op on the same v (a
// window) to read; its gradient comes back here and the backward kernel adds
// it into d_v, so autograd runs no addition of the two.
std::optional<LinearTerms> ChunkedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                        const at::Tensor& phi_k,
                                                        const at::Tensor& v,
                                                        const at::Tensor& log_gamma,
                                                        int64_t key_delay = 0,
                                                        bool pass_v = false);

// The backward kernels alone (ungated), for a forward run elsewhere
// (LoLCATs' fused training forward, whose kernel writes the same saved
// tensors): bfloat16 phi_q [B, H, T, F], phi_k [B, Hk, T, F] and v
// [B, Hv, T, D] as the forward read them, d_num (bfloat16) [B, H, T, D] and
// d_den (float32) [B, H, T], the passed-through v's gradient to add in (or
// undefined), and the forward's block states and chunks per block
// (undefined and 0 for one block). d_phi_q and d_phi_k in bfloat16, d_v in
// v's dtype, in the inputs' heads. With hedgehog_logits (phi = the Hedgehog
// maps' [softmax(l), softmax(-l)], F = 128 on the wgmma kernels), d_phi_q
// and d_phi_k hold the gradients of the logits l instead, [.., F / 2]
// (float32 where query heads are summed into kv heads).
struct LinearTermGrads {
  at::Tensor d_phi_q, d_phi_k, d_v;
};
LinearTermGrads ChunkedLinearTermsBackwardCuda(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                               const at::Tensor& v, const at::Tensor& d_num,
                                               const at::Tensor& d_den, const at::Tensor& d_v_pass,
                                               const at::Tensor& block_states, int64_t block_chunks,
                                               int64_t key_delay, bool hedgehog_logits = false);

// The normalised form y = num / (den + eps) of the same op, in bfloat16
// [B, H, T, D], under the same conditions (no key delay). The forward kernel
// writes y itself (and num, den for the backward), and the backward kernels
// form num's gradient dy / (den + eps) as they load it, so no float32 y and
// no gradients of num or y pass through device memory. pass_v as above.
struct NormalizedLinear {
  at::Tensor y;       // [B, H, T, D] bfloat16
  at::Tensor v_pass;  // v itself with pass_v, else undefined
};
std::optional<NormalizedLinear> NormalizedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                                const at::Tensor& phi_k,
                                                                const at::Tensor& v,
                                                                const at::Tensor& log_gamma,
                                                                double eps, bool pass_v = false);

// The same with the Hedgehog maps inside: phi_q = map(q, q_weight) and
// phi_k = map(k, k_weight), q [B, H, T, D] and k [B, Hk, T, D] with weights
// [H, D, Fh] and [Hk, D, Fh], gradients for all six inputs. The backward's
// kernels form the maps' logits' gradients (hedgehog_logits above) and the
// maps' kernel dx and dW from them, so no phi or d_phi passes to the maps.
// log_gamma in any floating dtype (the kernels read it as float32). Runs
// where the wgmma kernels cover it: D = 2 Fh = 128, else nullopt.
std::optional<NormalizedLinear> HedgehogNormalizedLinearTrainCuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& log_gamma,
    const at::Tensor& q_weight, const at::Tensor& k_weight, double eps, bool pass_v = false);

// The gates' gradient [B, G, T] from the d_q and d_k kernels' per-row dots
// q_dot and k_dot [B, H, T] (float32, contiguous, CUDA): the suffix sums over
// T of q_dot - k_dot, summed over each gate head's query heads
// (gate_grad_params.h's kernels). GateGradientReference: the same in
// LibTorch ops, on any device and floating dtype.
at::Tensor GateGradientCuda(const at::Tensor& q_dot, const at::Tensor& k_dot, int64_t g_heads);
at::Tensor GateGradientReference(const at::Tensor& q_dot, const at::Tensor& k_dot, int64_t g_heads);

}  // namespace linearize::kernels::detail
