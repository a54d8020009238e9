// Helpers for CUDA-vs-reference tests: error relative to the reference's
// magnitude, and poisoning of outputs so that a kernel that writes nothing
// cannot pass by reusing a previous result.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <vector>

namespace linearize::testing {

// max |a - b| / max |b|, computed in float64.
inline double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ad = a.to(at::kDouble).cpu(), bd = b.to(at::kDouble).cpu();
  const double scale = bd.abs().max().item<double>();
  return (ad - bd).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
}

// Fills the caching allocator's free blocks with NaNs: allocate buffers,
// fill them, free them, so the next allocations reuse poisoned memory. One
// large buffer for the large pool, and 64 MB of 1 MB blocks for the small
// pool, which serves every request of 1 MB or less (the 2 MB segments they
// split stay cached).
inline void PoisonCudaAllocator(int64_t bytes = int64_t{256} << 20) {
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  at::empty({bytes / 4}, f32).fill_(nan);
  std::vector<at::Tensor> small;
  for (int i = 0; i < 64; ++i) small.push_back(at::empty({(int64_t{1} << 20) / 4}, f32).fill_(nan));
}

}  // namespace linearize::testing
