// CUDA paths of the Lizard entry points (compiled only with
// LINEARIZE_WITH_CUDA): the batched decode kernels (lizard_decode_cuda.cu),
// and the prefill (from the empty state or continuing one) on the chunked
// kernel and the hybrids' window kernel (lolcats_window_cuda.cu).
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

// A prompt: the gated branch on the chunked kernel (Hedgehog maps fused in
// for bf16, kv heads and gates read as given; from `initial`'s linear state
// when it continues one), then the window kernel, which adds the two
// branches (continuing: over the ring's recent keys and the prompt). Called
// before Prepare (checks as it and the state check do, same messages); y
// and, with want_state, the state (a continued one keeps its dtypes).
std::optional<PrefillResult> PrefillCuda(const char* op, const Inputs& in, const Weights& weights,
                                         const Options& options, bool want_state,
                                         const State* initial = nullptr);

}  // namespace linearize::kernels::lizard::internal
