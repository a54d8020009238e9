// ATen side of the Hedgehog feature-map CUDA kernel (hedgehog_cuda.cu).
// Compiled only with LINEARIZE_WITH_CUDA. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/feature_map/hedgehog_params.h"

namespace linearize::kernels::detail {

// HedgehogFeatureMap(x, weight) on the GPU: x [B, H, T, D] float32/bfloat16,
// weight [H, D, Fh] (cast to x's dtype) -> [B, H, T, 2 Fh] in x's dtype. Returns
// nullopt when the kernel does not cover the inputs (D not 64/128, Fh not
// 32/64, other dtypes, gradients needed, T = 0).
std::optional<at::Tensor> HedgehogFeatureMapCuda(const at::Tensor& x, const at::Tensor& weight);

// The kernel's sizes for x [B, H, T, D] and weight [H, D, Fh] (element type
// left to the caller), or nullopt when it does not cover them.
std::optional<HedgehogParams> HedgehogShape(const at::Tensor& x, const at::Tensor& weight);

// Runs the kernel of `p` (sizes and type set) on contiguous x and weight_t
// [H, Fh, D] of that type; returns phi [B, H, T, 2 Fh].
at::Tensor RunHedgehog(HedgehogParams p, const at::Tensor& x, const at::Tensor& weight_t);

}  // namespace linearize::kernels::detail
