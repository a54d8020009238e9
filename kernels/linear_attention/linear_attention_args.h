// Argument checks and feature preparation shared by the baseline's entry
// points. Internal to kernels/linear_attention/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/feature_map/feature_map.h"
#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/linear_attention.h"

namespace linearize::kernels::linear_attention::internal {

// Inputs in the compute dtype, expanded to the query heads. `compute`
// overrides detail::ComputeType(q): bfloat16 when a training step's features
// and products run on the CUDA kernels, which compute in it anyway.
struct Prepared {
  detail::QkvDims dims;
  at::Tensor phi_q;  // [B, Hq, T, F]
  at::Tensor phi_k;  // [B, Hq, T, F]
  at::Tensor v;      // [B, Hq, T, D]
};

// Checks q, k, v, maps and options (messages start with `op`), then computes
// the features.
Prepared Prepare(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const FeatureMaps& maps, const Options& options,
                 std::optional<at::ScalarType> compute = std::nullopt);

// Checks a recurrent state against the dims (feature dim f) and q's device.
void CheckState(const char* op, const State& state, const detail::QkvDims& dims, int64_t f,
                const at::Tensor& q);

}  // namespace linearize::kernels::linear_attention::internal
