// CUDA paths of the baseline's entry points (compiled only with
// LINEARIZE_WITH_CUDA): features by the Hedgehog kernel (or elu+1) in the
// input dtype, then the chunked kernel; decode by the batched decode kernel.
// Each returns nullopt when its kernels do not cover the inputs, and the
// caller runs the LibTorch form. Internal to kernels/linear_attention/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/feature_map/feature_map.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/linear_attention.h"

namespace linearize::kernels::linear_attention::internal {

// Checks the arguments exactly as Prepare does (same messages) when it takes
// them; the state comes back only with want_state. `initial`: the state the
// prompt continues (Prefill's), or null; a continued state keeps its dtype.
std::optional<PrefillResult> PrefillCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const FeatureMaps& maps,
                                         const Options& options, bool want_state,
                                         const State* initial = nullptr);

// Called after DecodeStep's checks; updates `state` in place.
std::optional<at::Tensor> DecodeStepCuda(State& state, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const FeatureMaps& maps,
                                         const Options& options);

}  // namespace linearize::kernels::linear_attention::internal

namespace linearize::kernels::detail {

// phi(k) for k [B, Hkv, T, D] without expanding to the query heads when the
// key map is per kv head (or elu+1): [B, Hkv or Hq, T, F]. The chunked kernel
// maps query heads onto these itself.
at::Tensor KeyFeaturesForKernel(const FeatureMaps& maps, const at::Tensor& k, int64_t q_heads);

// The chunked kernel on raw q [B, Hq, T, D] and k [B, Hkv, T, D] through
// `maps`: the Hedgehog maps fused into it for bf16 when it takes them, else
// on features from the map kernels. `in` carries the rest (v, gates, delay,
// initial state, outputs); its phi/weight fields are set here. nullopt when
// the kernel does not cover the inputs.
std::optional<CudaLinearOutputs> ChunkedCausalLinearOnMapsCuda(CudaLinearInputs in,
                                                               const FeatureMaps& maps,
                                                               const at::Tensor& q,
                                                               const at::Tensor& k,
                                                               int64_t q_heads);

}  // namespace linearize::kernels::detail
