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
// 128}. num and den come back in float32 (gradients in the inputs' dtypes).
// Otherwise nullopt, and the caller takes the LibTorch form.
std::optional<LinearTerms> ChunkedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                        const at::Tensor& phi_k,
                                                        const at::Tensor& v,
                                                        const at::Tensor& log_gamma);

}  // namespace linearize::kernels::detail
