// The sizes the hybrids' window kernels (forward lolcats_window_params.h,
// backward lolcats_window_bwd_params.h) take, from q [B, H, T, D] and
// k [B, Hkv, T, D]. Internal to kernels/ (the training wrappers of both
// hybrids).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>

namespace linearize::kernels::detail {

template <typename Params>
Params WindowShape(const at::Tensor& q, const at::Tensor& k, int64_t window,
                   int64_t sink_count = 0) {
  Params p;
  p.batch = q.size(0);
  p.heads = q.size(1);
  p.kv_heads = k.size(1);
  p.length = q.size(2);
  p.head_dim = q.size(3);
  p.window = window;
  p.sink_count = sink_count;
  p.scale = static_cast<float>(1.0 / std::sqrt(double(p.head_dim)));
  return p;
}

}  // namespace linearize::kernels::detail
