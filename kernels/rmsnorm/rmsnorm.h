// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
// One entry point; CPU tensors take the LibTorch reference, CUDA tensors the
// fused kernel (when built with LINEARIZE_WITH_CUDA).
#pragma once

#include <ATen/core/Tensor.h>

namespace linearize::kernels {

// x: [..., D] float32/float16/bfloat16; weight: [D], same device.
// Statistics are accumulated in float32; the result has x's dtype.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// The plain LibTorch reference (any device), used by tests and on CPU.
at::Tensor RmsNormReference(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace linearize::kernels
