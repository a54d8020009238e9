// The rotary entry points: check arguments, then run the LibTorch reference,
// or the CUDA kernel for CUDA tensors outside autograd.
#include "kernels/rope/rope.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <vector>

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

void CheckArguments(const char* op, const at::Tensor& x, const at::Tensor& cos,
                    const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, op,
              ": x must be [B, H, T, D] with an even D, got ", x.sizes());
  const int64_t b = x.size(0), t = x.size(2), d = x.size(3);
  TORCH_CHECK(AsRowTable(cos, b, t, d).defined() && cos.sizes() == sin.sizes(), op,
              ": cos and sin must both be [T, D] = [", t, ", ", d, "] or [B, 1, T, D] = [", b,
              ", 1, ", t, ", ", d, "], got ", cos.sizes(), " and ", sin.sizes());
  TORCH_CHECK(cos.device() == x.device() && sin.device() == x.device(), op, ": cos and sin are on ",
              cos.device(), " and ", sin.device(), " but x is on ", x.device());
}

// The rotations of `xs` (same B, T, D) by the CUDA kernel in one launch, or
// an empty vector when the kernel does not apply (CPU, autograd, dtype).
std::vector<at::Tensor> RotateOnCuda(const std::vector<at::Tensor>& xs, const at::Tensor& cos,
                                     const at::Tensor& sin) {
#ifdef LINEARIZE_WITH_CUDA
  const at::Tensor& x0 = xs.front();
  const at::ScalarType type = x0.scalar_type();
  bool applies = x0.is_cuda() && cos.scalar_type() == type && sin.scalar_type() == type &&
                 (type == at::kFloat || type == at::kHalf || type == at::kBFloat16);
  const bool grad = at::GradMode::is_enabled();
  if (grad && (cos.requires_grad() || sin.requires_grad())) applies = false;
  for (const at::Tensor& x : xs) {
    // The kernel has no backward: with autograd recording, the reference runs.
    if (x.scalar_type() != type || x.device() != x0.device() || (grad && x.requires_grad())) {
      applies = false;
    }
  }
  if (!applies) return {};
  const c10::cuda::CUDAGuard guard(x0.device());
  const int64_t b = x0.size(0), t = x0.size(2), d = x0.size(3);
  const at::Tensor c = AsRowTable(cos, b, t, d).contiguous();
  const at::Tensor s = AsRowTable(sin, b, t, d).contiguous();
  RotaryParams p;
  std::vector<at::Tensor> inputs, outputs;
  for (const at::Tensor& x : xs) {
    const at::Tensor in = x.stride(3) == 1 ? x : x.contiguous();
    at::Tensor y = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
    RotaryJob& job = p.jobs[inputs.size()];
    job.x = in.data_ptr();
    job.x_stride_b = in.stride(0);
    job.x_stride_h = in.stride(1);
    job.x_stride_t = in.stride(2);
    job.heads = x.size(1);
    job.y = y.data_ptr();
    inputs.push_back(in);
    outputs.push_back(y);
  }
  p.num_jobs = static_cast<int>(xs.size());
  p.cos = c.data_ptr();
  p.sin = s.data_ptr();
  p.cs_stride_b = c.size(0) == 1 ? 0 : t * d;
  p.batch = b;
  p.length = t;
  p.head_dim = d;
  p.type = type == at::kFloat  ? ElementType::kF32
           : type == at::kHalf ? ElementType::kF16
                               : ElementType::kBF16;
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchRotary(p);
  TORCH_CHECK(err == nullptr, "Rotary: CUDA launch failed: ", err);
  return outputs;
#else
  (void)xs;
  (void)cos;
  (void)sin;
  return {};
#endif
}

}  // namespace

at::Tensor RotaryReference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

at::Tensor Rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  CheckArguments("Rotary", x, cos, sin);
  if (std::vector<at::Tensor> y = RotateOnCuda({x}, cos, sin); !y.empty()) return y[0];
  return RotaryReference(x, cos, sin);
}

std::pair<at::Tensor, at::Tensor> RotaryQk(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& cos, const at::Tensor& sin) {
  CheckArguments("RotaryQk", q, cos, sin);
  CheckArguments("RotaryQk", k, cos, sin);
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3),
              "RotaryQk: q ", q.sizes(), " and k ", k.sizes(),
              " must share batch, length and head size");
  if (std::vector<at::Tensor> y = RotateOnCuda({q, k}, cos, sin); !y.empty()) return {y[0], y[1]};
  return {RotaryReference(q, cos, sin), RotaryReference(k, cos, sin)};
}

}  // namespace linearize::kernels
