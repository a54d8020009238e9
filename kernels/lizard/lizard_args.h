// Argument checks and input preparation shared by the Lizard entry points.
// Internal to kernels/lizard/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/lizard/lizard_attention.h"

namespace linearize::kernels::lizard::internal {

// Checks every input, weight and option (messages start with `op`).
detail::QkvDims Check(const char* op, const Inputs& in, const Weights& weights,
                      const Options& options);

// The window branch's q and k (q_window/k_window, else q/k).
const at::Tensor& WindowQ(const Inputs& in);
const at::Tensor& WindowK(const Inputs& in);

// Inputs in the compute dtype, expanded to the query heads. `features`
// overrides detail::ComputeType(q) for the feature maps' inputs and v:
// bfloat16 when the gated branch trains on the CUDA kernels, which compute
// in it anyway (the gates, sinks and alpha stay in the compute dtype).
struct Prepared {
  detail::QkvDims dims;
  at::Tensor phi_q, phi_k;  // [B, Hq, T, F]
  at::Tensor v;             // [B, Hq, T, D]
  at::Tensor log_gamma;     // [B, Hq, T]
  at::Tensor meta;          // [1, Hq, 1, M]
  at::Tensor alpha;         // [1, Hq, 1, 1]
  // With features for the training kernels: phi_k at the kv heads (which
  // phi_k expands), where the map runs per kv head; else undefined.
  at::Tensor phi_k_kv;
};

Prepared Prepare(const char* op, const Inputs& in, const Weights& weights, const Options& options,
                 std::optional<at::ScalarType> features = std::nullopt);

// The window branch's q and k [B, Hq, T, D] in the compute dtype, k expanded
// to the query heads: only the LibTorch window branch needs them (the CUDA
// kernels read WindowQ/WindowK as given).
struct WindowQk {
  at::Tensor q, k;
};
WindowQk ExpandWindowQk(const Inputs& in, int64_t q_heads);

}  // namespace linearize::kernels::lizard::internal
