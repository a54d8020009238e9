// CUDA paths of the Lizard entry points (compiled only with
// LINEARIZE_WITH_CUDA): the batched decode kernels (lizard_decode_cuda.cu),
// and the window branch of a prefill from the empty state on the hybrids'
// window kernel (lolcats_window_cuda.cu), which also adds the gated branch.
// Each returns nullopt when its kernels do not cover the inputs, and the
// caller runs the LibTorch form. Internal to kernels/lizard/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/lizard/lizard_attention.h"

namespace linearize::kernels::lizard::internal {

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const Inputs& in, const Weights& weights,
                                         const Options& options);

// y = gla.num / (gla.den + eps) + alpha y_win for a prompt from the empty
// state: gla the gated branch's float32 terms from the chunked kernel.
std::optional<at::Tensor> WindowCombineCuda(const Inputs& in, const Weights& weights,
                                            const Options& options, const detail::LinearTerms& gla);

}  // namespace linearize::kernels::lizard::internal
