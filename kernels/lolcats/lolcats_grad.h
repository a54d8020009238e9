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

#include "kernels/lolcats/lolcats_attention.h"

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

// Whether a training step of the parallel form runs wholly on the kernels:
// autograd on CUDA in bfloat16 (or float32 under autocast), sliding windows
// the window kernels cover, Hedgehog (Fh 32/64) or elu+1 features, D 64/128.
// Then Run prepares its inputs in bfloat16 instead of float32 copies.
bool TrainsOnKernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const Weights& weights, const Options& options);

}  // namespace linearize::kernels::lolcats::internal
