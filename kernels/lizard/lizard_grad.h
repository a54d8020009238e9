// Training path of Lizard on the CUDA kernels (compiled only with
// LINEARIZE_WITH_CUDA). The window branch: forward by the hybrids' window
// kernel (lolcats_window_cuda.cu), backward by lolcats_window_bwd_cuda.cu.
// The gated branch trains on the chunked kernels (chunked_linear_grad.h),
// with the Hedgehog maps inside them where they cover the sizes.
// Internal to kernels/lizard/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/lizard/lizard_attention.h"

namespace linearize::kernels::lizard::internal {

// The window branch alone,
//   y_i = sum_win exp(s_ij - c_i) v_j / (sum_win exp(s_ij - c_i) + sum_m
//   exp(l_m - c_i)),
// for qw [B, H, T, D], kw, v [B, Hkv, T, D] and sink logits meta_logits
// [H, M] (1 <= M <= 8), windows of W <= 128, with gradients for all four.
// Runs when autograd needs it and the kernels cover the inputs (CUDA,
// bfloat16 or float32 under CUDA autocast, D in {64, 128}); y is bfloat16.
// Otherwise nullopt, and the caller takes the LibTorch form.
// With alpha (H elements) the output is y_other + alpha_h y (y_other, the
// gated branch's output [B, H, T, D], optional), in the kernel, with
// gradients for alpha and y_other too.
std::optional<at::Tensor> WindowBranchTrainCuda(const at::Tensor& qw, const at::Tensor& kw,
                                                const at::Tensor& v, const at::Tensor& meta_logits,
                                                int64_t window, const at::Tensor& alpha = {},
                                                const at::Tensor& y_other = {});

// The gated branch of a training forward (no state) with its Hedgehog maps
// inside (detail::HedgehogNormalizedLinearTrainCuda), for inputs that Check
// accepted: y [B, Hq, T, D] bfloat16, and v passed through with pass_v.
// nullopt where the kernels do not cover the inputs.
std::optional<detail::NormalizedLinear> GatedTrainCuda(const Inputs& in, const Weights& weights,
                                                       const Options& options, bool pass_v);

// A whole training forward (no state) on the kernels: the gated branch with
// its Hedgehog maps inside (detail::HedgehogNormalizedLinearTrainCuda) and
// the window branch adding alpha y_win to it in its kernel. nullopt where
// the kernels do not cover the inputs (the caller then composes the
// branches). Where the kernels cover the sizes, checks the inputs before
// running anything (messages start with `op`).
std::optional<at::Tensor> TrainCuda(const char* op, const Inputs& in, const Weights& weights,
                                    const Options& options);

}  // namespace linearize::kernels::lizard::internal
