// Training path of the LoLCATs hybrid on the CUDA kernels (compiled only with
// LINEARIZE_WITH_CUDA): the window terms and the shared normaliser as one
// differentiable op, forward by the window kernel (lolcats_window_cuda.cu),
// backward by lolcats_window_bwd_cuda.cu. The linear part's num/den come in
// as differentiable inputs (from ChunkedCausalLinear, itself on the kernels
// in training, chunked_linear_grad.h). Internal to kernels/lolcats/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/lolcats/lolcats_attention.h"
#include "kernels/lolcats/window_bwd_outputs.h"
#include "kernels/lolcats/window_bwd_prologue.h"

namespace linearize::kernels::lolcats::internal {

// y = (g sum_win exp(s - c) v + lin_num) / (g sum_win exp(s - c) + lin_den)
// for sliding windows of W <= 64, with gradients for q [B, H, T, D], k, v
// [B, Hkv, T, D], gate g [H] and lin_num [B, H, T, D] / lin_den [B, H, T].
// Runs when autograd needs it and the kernels cover the inputs (CUDA,
// bfloat16 or float32 under CUDA autocast, D in {64, 128}); y is bfloat16.
// Otherwise nullopt, and the caller takes the LibTorch form.
std::optional<at::Tensor> WindowCombineTrainCuda(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, const at::Tensor& gate,
                                                 const at::Tensor& lin_num,
                                                 const at::Tensor& lin_den, int64_t window);

// LoLCATs' training forward as one kernel and its backward by the window,
// chunked linear and map backward kernels (lolcats_train.cc): y of
// ForwardParallel, bfloat16. Call where TrainsOnKernels holds; runs when
// the fused kernel covers the call: Hedgehog maps with Fh = 64, D = 128, the
// key map per kv head, a sliding window of 64, T > 64, an sm_90 device. Checks the
// arguments as Prepare does. Otherwise nullopt.
std::optional<at::Tensor> FusedTrainCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options);

// What the window combine's backward reads, as its forward saved it: q
// [B, H, T, D], k, v [B, Hkv, T, D] in bfloat16, the gate g [H] float32, y
// (bfloat16) and its denominator Z [B, H, T] (float32), the linear terms
// lin_num (bfloat16 or float32) and lin_den [B, H, T] (float32) that y
// holds, the window and which inputs were bfloat16.
struct WindowCombineSaved {
  at::Tensor q, k, v, gate, y, z, lin_num, lin_den;
  int64_t window = 0;
  detail::WindowInputTypes types;

  // From saved tensors s[0..7] in the fields' order.
  static WindowCombineSaved Of(const std::vector<at::Tensor>& s, int64_t window,
                               detail::WindowInputTypes types) {
    return {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], window, types};
  }
};
// Gradients of q, k, v (kv heads), the gate, lin_num (in lin_num's dtype)
// and lin_den, from y's gradient dy: the prologue and window backward kernels.
struct WindowCombineGrads {
  at::Tensor dq, dk, dv, d_gate, d_num, d_den;
};
WindowCombineGrads WindowCombineBackward(const WindowCombineSaved& saved, const at::Tensor& dy);

// The same in two parts, for a caller that runs the linear part's backward
// between them (LoLCATs' fused step, whose fold needs that backward's
// outputs): the prologue's (d_gate, d_num, d_den, and the rows the window
// kernels read), then the kernels' (dq, dk, dv, the rest copied).
struct WindowCombineRowGrads {
  detail::WindowBwdGrads prologue;
  at::Tensor d_gate;
};
WindowCombineRowGrads WindowCombineRows(const WindowCombineSaved& saved, const at::Tensor& dy);

// The fold (LolcatsWindowBwdParams): the Hedgehog maps' logits' gradients
// dl_q, dl_k [B, H, T, Fh] and W^T [H, Fh, D] (Fh = kWindowFoldHalfFeatures,
// 64) and the linear part's d_v [B, H, T, D], all bfloat16. dq and dk then
// come back as q's and k's whole gradients and dv as v's.
struct WindowFold {
  at::Tensor dl_q, q_weight_t, dl_k, k_weight_t, d_v_add;
};
// Whether the window kernels can fold the maps' part in for these inputs
// (heads = kv heads, D = 128, Fh = 64, window <= 64).
bool WindowFoldApplies(const WindowCombineSaved& saved, int64_t half_features);
WindowCombineGrads WindowCombineQkvGrads(const WindowCombineSaved& saved,
                                         const WindowCombineRowGrads& rows,
                                         const WindowFold* fold = nullptr);

// Whether a training step of the parallel form runs wholly on the kernels:
// autograd on CUDA in bfloat16 (or float32 under autocast), sliding windows
// the window kernels cover, Hedgehog (Fh 32/64) or elu+1 features, D 64/128.
// Then Run prepares its inputs in bfloat16 instead of float32 copies.
bool TrainsOnKernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const Weights& weights, const Options& options);

}  // namespace linearize::kernels::lolcats::internal
