// CUDA paths of the LoLCATs entry points (compiled only with
// LINEARIZE_WITH_CUDA), sliding windows of W <= 64:
//   prefill: features by the Hedgehog kernel in the input dtype; the linear
//   part (keys older than the window) by the chunked kernel with keys delayed
//   by W, which also yields the prefill state; the window softmax terms and
//   the shared normaliser by the window kernel. A prompt that continues a
//   state runs the same kernels, the linear part from that state.
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

// A prompt that continues `initial` (every row at position p0 > 0; called
// after Prefill's checks): the kernels over the LibTorch Continue's extended
// sequence, the linear part starting from the state; sliding windows only.
std::optional<PrefillResult> ContinueCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const Weights& weights,
                                          const Options& options, bool want_state,
                                          const State& initial, int64_t p0);

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options);

}  // namespace linearize::kernels::lolcats::internal
