// The one RMSNorm entry point: checks arguments, then runs the LibTorch
// reference on CPU or the CUDA kernel on the GPU.
#include "kernels/rmsnorm/rmsnorm.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/rmsnorm/rmsnorm_params.h"
#endif

namespace linearize::kernels {

at::Tensor RmsNormReference(const at::Tensor& x, const at::Tensor& weight, double eps) {
  // HF LlamaRMSNorm: statistics in float32 (float64 stays float64), the
  // normalised value rounded back to the input dtype before the weight
  // multiplies it.
  const at::Tensor xf = x.scalar_type() == at::kDouble ? x : x.to(at::kFloat);
  const at::Tensor inv_rms = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * (xf * inv_rms).to(x.scalar_type());
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() >= 1, "RmsNorm: x must have at least 1 dimension, got ", x.sizes());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1),
              "RmsNorm: weight must be [", x.size(-1), "] to match x's last dimension, got ",
              weight.sizes());
  TORCH_CHECK(weight.device() == x.device(), "RmsNorm: weight is on ", weight.device(),
              " but x is on ", x.device());
  TORCH_CHECK(eps >= 0, "RmsNorm: eps must be >= 0, got ", eps);
#ifdef LINEARIZE_WITH_CUDA
  // The kernel has no backward: with autograd recording (training), the
  // reference runs so that gradients flow.
  const bool needs_grad = at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (x.is_cuda() && !needs_grad && weight.scalar_type() == x.scalar_type() &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf ||
       x.scalar_type() == at::kBFloat16)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.stride(-1) == 1 ? x : x.contiguous();
    const at::Tensor x2 = xc.reshape({-1, x.size(-1)});  // a view when rows are evenly strided
    const at::Tensor w = weight.contiguous();
    at::Tensor y = at::empty(x2.sizes(), x.options());
    RmsNormParams p;
    p.x = x2.data_ptr();
    p.weight = w.data_ptr();
    p.y = y.data_ptr();
    p.rows = x2.size(0);
    p.dim = x2.size(1);
    p.x_row_stride = x2.stride(0);
    p.eps = static_cast<float>(eps);
    p.type = x.scalar_type() == at::kFloat  ? ElementType::kF32
             : x.scalar_type() == at::kHalf ? ElementType::kF16
                                            : ElementType::kBF16;
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchRmsNorm(p);
    TORCH_CHECK(err == nullptr, "RmsNorm: CUDA launch failed: ", err);
    return y.view(x.sizes());
  }
#endif
  return RmsNormReference(x, weight, eps);
}

}  // namespace linearize::kernels
