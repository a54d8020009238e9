#include "kernels/feature_map/hedgehog_dispatch.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/linear_attention/cuda_dispatch.h"

namespace linearize::kernels::detail {

std::optional<HedgehogParams> HedgehogShape(const at::Tensor& x, const at::Tensor& weight) {
  if (x.dim() != 4 || weight.dim() != 3 || weight.size(0) != x.size(1) ||
      weight.size(1) != x.size(3)) {
    return std::nullopt;
  }
  HedgehogParams p;
  p.batch = x.size(0);
  p.heads = x.size(1);
  p.length = x.size(2);
  p.head_dim = x.size(3);
  p.half_features = weight.size(2);
  if (!HedgehogSupported(p)) return std::nullopt;
  return p;
}

at::Tensor RunHedgehog(HedgehogParams p, const at::Tensor& x, const at::Tensor& weight_t) {
  at::Tensor out = at::empty({p.batch, p.heads, p.length, 2 * p.half_features}, x.options());
  p.x = x.data_ptr();
  p.weight_t = weight_t.data_ptr();
  p.out = out.data_ptr();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchHedgehog(p);
  TORCH_CHECK(err == nullptr, "HedgehogFeatureMap: CUDA launch failed: ", err);
  CountCudaFeatureMapLaunch();
  return out;
}

std::optional<at::Tensor> HedgehogFeatureMapCuda(const at::Tensor& x, const at::Tensor& weight) {
  if (!x.defined() || !weight.defined() || !CudaKernelApplies(x.device(), {&x, &weight})) {
    return std::nullopt;
  }
  std::optional<HedgehogParams> p = HedgehogShape(x, weight);
  if (!p || !KernelElementType(x.scalar_type(), &p->type)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor wt = weight.to(x.scalar_type()).transpose(1, 2).contiguous();  // [H, Fh, D]
  return RunHedgehog(*p, x.contiguous(), wt);
}

}  // namespace linearize::kernels::detail
