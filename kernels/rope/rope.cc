// The one rotary entry point: checks arguments, then runs the LibTorch
// reference, or the CUDA kernel for CUDA tensors outside autograd.
#include "kernels/rope/rope.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/rope/rope_params.h"
#endif

namespace linearize::kernels {
namespace {

// cos/sin as [Bc, T, D] (Bc = 1 or B), or undefined when their shape fits
// neither form.
at::Tensor AsRowTable(const at::Tensor& t, int64_t batch, int64_t length, int64_t dim) {
  if (t.dim() == 2 && t.size(0) == length && t.size(1) == dim) return t.unsqueeze(0);
  if (t.dim() == 4 && (t.size(0) == batch || t.size(0) == 1) && t.size(1) == 1 &&
      t.size(2) == length && t.size(3) == dim) {
    return t.squeeze(1);
  }
  return {};
}

}  // namespace

at::Tensor RotaryReference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

at::Tensor Rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0,
              "Rotary: x must be [B, H, T, D] with an even D, got ", x.sizes());
  const int64_t b = x.size(0), t = x.size(2), d = x.size(3);
  const at::Tensor cos_rows = AsRowTable(cos, b, t, d), sin_rows = AsRowTable(sin, b, t, d);
  TORCH_CHECK(cos_rows.defined() && sin_rows.defined() && cos.sizes() == sin.sizes(),
              "Rotary: cos and sin must both be [T, D] = [", t, ", ", d, "] or [B, 1, T, D] = [", b,
              ", 1, ", t, ", ", d, "], got ", cos.sizes(), " and ", sin.sizes());
  TORCH_CHECK(cos.device() == x.device() && sin.device() == x.device(),
              "Rotary: cos and sin are on ", cos.device(), " and ", sin.device(), " but x is on ",
              x.device());
#ifdef LINEARIZE_WITH_CUDA
  // The kernel has no backward: with autograd recording, the reference runs.
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (x.requires_grad() || cos.requires_grad() || sin.requires_grad());
  const at::ScalarType type = x.scalar_type();
  if (x.is_cuda() && !needs_grad && cos.scalar_type() == type && sin.scalar_type() == type &&
      (type == at::kFloat || type == at::kHalf || type == at::kBFloat16)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xs = x.stride(3) == 1 ? x : x.contiguous();
    const at::Tensor c = cos_rows.contiguous(), s = sin_rows.contiguous();
    at::Tensor y = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
    RotaryParams p;
    p.x = xs.data_ptr();
    p.x_stride_b = xs.stride(0);
    p.x_stride_h = xs.stride(1);
    p.x_stride_t = xs.stride(2);
    p.cos = c.data_ptr();
    p.sin = s.data_ptr();
    p.cs_stride_b = c.size(0) == 1 ? 0 : t * d;
    p.y = y.data_ptr();
    p.batch = b;
    p.heads = x.size(1);
    p.length = t;
    p.head_dim = d;
    p.type = type == at::kFloat  ? ElementType::kF32
             : type == at::kHalf ? ElementType::kF16
                                 : ElementType::kBF16;
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchRotary(p);
    TORCH_CHECK(err == nullptr, "Rotary: CUDA launch failed: ", err);
    return y;
  }
#endif
  return RotaryReference(x, cos, sin);
}

}  // namespace linearize::kernels
