// Helpers for the attention GPU tests: random inputs drawn in float64 on the
// CPU, the values the kernel sees (rounded through the test dtype) for the
// float64 reference, and the tolerance rule (1e-4 for float32 inputs, 1e-2 for
// bfloat16), plus a guard that a CUDA kernel, not the LibTorch fallback, ran.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/feature_map/feature_map.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::testing {

inline double Tol(at::ScalarType type) { return type == at::kFloat ? 1e-4 : 1e-2; }

inline std::string DtypeName(at::ScalarType type) {
  return type == at::kFloat ? "f32" : "bf16";
}

// x rounded through `type`, back in float64 on the CPU (what the kernel sees).
inline at::Tensor Seen(const at::Tensor& x, at::ScalarType type) {
  return x.to(type).to(at::kDouble);
}
inline at::Tensor OnGpu(const at::Tensor& x, at::ScalarType type) { return x.to(type).cuda(); }

inline bool AllFinite(const at::Tensor& x) { return at::isfinite(x).all().item<bool>(); }

// While alive: CUDA autocast to bfloat16, as training runs it (the
// converter's convert::AutocastScope, which these kernel-only tests cannot
// link); CUDA's default autocast dtype would be float16. Restores the dtype,
// turns autocast off and drops its cast cache.
class CudaBf16Autocast {
 public:
  CudaBf16Autocast() : was_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)) {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~CudaBf16Autocast() {
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::set_autocast_dtype(at::kCUDA, was_dtype_);
    at::autocast::clear_cache();
  }
  CudaBf16Autocast(const CudaBf16Autocast&) = delete;
  CudaBf16Autocast& operator=(const CudaBf16Autocast&) = delete;

 private:
  at::ScalarType was_dtype_;
};

// Hedgehog maps with logits of order 1 (weights N(0, 1/D)), in float64.
inline kernels::FeatureMaps RandomHedgehog(int64_t hq, int64_t k_heads, int64_t d, int64_t fh) {
  kernels::FeatureMaps m;
  m.kind = kernels::FeatureMapKind::kHedgehog;
  m.q_weight = at::randn({hq, d, fh}, at::kDouble) / std::sqrt(double(d));
  m.k_weight = at::randn({k_heads, d, fh}, at::kDouble) / std::sqrt(double(d));
  return m;
}

// The maps as the kernel sees them (weights rounded through `type`), on the
// CPU in float64 or on the GPU in `type`.
inline kernels::FeatureMaps MapsSeen(const kernels::FeatureMaps& m, at::ScalarType type) {
  kernels::FeatureMaps out = m;
  if (m.q_weight.defined()) out.q_weight = Seen(m.q_weight, type);
  if (m.k_weight.defined()) out.k_weight = Seen(m.k_weight, type);
  return out;
}
inline kernels::FeatureMaps MapsOnGpu(const kernels::FeatureMaps& m, at::ScalarType type) {
  kernels::FeatureMaps out = m;
  if (m.q_weight.defined()) out.q_weight = OnGpu(m.q_weight, type);
  if (m.k_weight.defined()) out.k_weight = OnGpu(m.k_weight, type);
  return out;
}

// Counts CUDA kernel launches made through the dispatchers in its lifetime.
class LaunchCounter {
 public:
  LaunchCounter()
      : start_(kernels::detail::CudaAttentionLaunchCount()),
        maps_start_(kernels::detail::CudaFeatureMapLaunchCount()) {}
  // Every kernel launch through the dispatchers since construction.
  int64_t Launches() const { return kernels::detail::CudaAttentionLaunchCount() - start_; }
  // Those of the attention kernels only: the LibTorch forms compute their
  // features with the map kernel too, so only these tell the paths apart.
  int64_t AttentionLaunches() const {
    return Launches() - (kernels::detail::CudaFeatureMapLaunchCount() - maps_start_);
  }

 private:
  int64_t start_, maps_start_;
};

}  // namespace linearize::testing
