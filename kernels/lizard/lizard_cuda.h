// CUDA path of lizard::DecodeStep (compiled only with LINEARIZE_WITH_CUDA):
// the batched decode kernels (lizard_decode_cuda.cu). Returns nullopt when
// they do not cover the inputs, and the caller runs the LibTorch form.
// Internal to kernels/lizard/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/lizard/lizard_attention.h"

namespace linearize::kernels::lizard::internal {

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const Inputs& in, const Weights& weights,
                                         const Options& options);

}  // namespace linearize::kernels::lizard::internal
