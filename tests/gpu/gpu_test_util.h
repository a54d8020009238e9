// Helpers for CUDA-vs-reference tests: error relative to the reference's
// magnitude, and poisoning of outputs so that a kernel that writes nothing
// cannot pass by reusing a previous result.
#pragma once

#include <ATen/ATen.h>

#include <limits>

namespace linearize::testing {

// max |a - b| / max |b|, computed in float64.
inline double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble).cpu(), bd = b.to(at::kDouble).cpu();
  const double scale = bd.abs().max().item<double>();
  return (ad - bd).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
}

// Fills the caching allocator's free blocks with NaNs: allocate a large
// buffer, fill it, free it, so the next allocations reuse poisoned memory.
inline void PoisonCudaAllocator(int64_t bytes = int64_t{256} << 20) {
  at::Tensor junk = at::empty({bytes / 4}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  junk.fill_(std::numeric_limits<float>::quiet_NaN());
}

}  // namespace linearize::testing
