// CUDA paths of the Lizard entry points (compiled only with
// LINEARIZE_WITH_CUDA): the batched decode kernels (lizard_decode_cuda.cu),
// and a prefill from the empty state on the chunked kernel and the hybrids'
// window kernel (lolcats_window_cuda.cu).
// Each returns nullopt when its kernels do not cover the inputs, and the
// caller runs the LibTorch form. Internal to kernels/lizard/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/lizard/lizard_attention.h"

namespace linearize::kernels::lizard::internal {

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const Inputs& in, const Weights& weights,
                                         const Options& options);

// A prompt from the empty state: the gated branch on the chunked kernel
// (Hedgehog maps fused in for bf16, kv heads and gates read as given), then
// the window kernel, which adds the two branches. Called before Prepare
// (checks as it does, same messages); y and, with want_state, the state.
std::optional<PrefillResult> PrefillCuda(const char* op, const Inputs& in, const Weights& weights,
                                         const Options& options, bool want_state);

}  // namespace linearize::kernels::lizard::internal
