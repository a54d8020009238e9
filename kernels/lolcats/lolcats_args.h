// Argument checks and input preparation shared by the LoLCATs entry points.
// Internal to kernels/lolcats/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/sliding_window.h"
#include "kernels/lolcats/lolcats_attention.h"

namespace linearize::kernels::lolcats::internal {

detail::WindowSpec Spec(const Options& options);

// Checks the weights and options against the dims (messages start with `op`).
void CheckWeights(const char* op, const detail::QkvDims& dims, const at::Device& device,
                  const Weights& weights, const Options& options);

// Inputs in the compute dtype, k and v expanded to the query heads.
// `compute` overrides detail::ComputeType(q): bfloat16 when every term
// trains on the CUDA kernels, which compute in it anyway (g stays float32).
struct Prepared {
  detail::QkvDims dims;
  at::Tensor q, k, v;       // [B, Hq, T, D]
  at::Tensor phi_q, phi_k;  // [B, Hq, T, F]
  at::Tensor g;             // [1, Hq, 1, 1] sigmoid(window_logit)
  // Training on the kernels with Hedgehog maps whose inputs are q and k
  // themselves (no head expansion): q and k as the map kernels pass them
  // through, for the window kernel, so that each one's two gradients meet in
  // the map's product (hedgehog_grad.h). Else undefined.
  at::Tensor q_window, k_window;
};

Prepared Prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const Weights& weights, const Options& options,
                 std::optional<at::ScalarType> compute = std::nullopt);

}  // namespace linearize::kernels::lolcats::internal
