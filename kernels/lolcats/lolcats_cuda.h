// CUDA paths of the LoLCATs entry points (compiled only with
// LINEARIZE_WITH_CUDA), sliding windows of W <= 64:
//   prefill: features by the Hedgehog kernel in the input dtype; the linear
//   part (keys older than the window) by the chunked kernel with keys delayed
//   by W, which also yields the prefill state; the window softmax terms and
//   the shared normaliser by the window kernel.
//   decode: the batched decode kernels (evict, ring write, attend).
// Each returns nullopt when its kernels do not cover the inputs, and the
// caller runs the LibTorch form. Internal to kernels/lolcats/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/lolcats/lolcats_attention.h"

namespace linearize::kernels::lolcats::internal {

// Checks the arguments as Prepare does (same messages) when it takes them.
std::optional<PrefillResult> PrefillCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options, bool want_state);

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options);

}  // namespace linearize::kernels::lolcats::internal
