// The Linear / AddLinear entry points: check arguments, then run the CUDA
// kernel when it applies, else LibTorch.
#include "kernels/gemv/gemv.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <atomic>

#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/swiglu/swiglu.h"

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/gemv/gemv_params.h"
#endif

namespace linearize::kernels {
namespace {

std::atomic<bool> gemv_enabled{true};

void CheckArguments(const char* op, const at::Tensor& x, const at::Tensor& w,
                    const at::Tensor& bias) {
  TORCH_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), op,
              ": x must be [..., K] and w [N, K], got ", x.sizes(), " and ", w.sizes());
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)), op,
              ": bias must be [N] = [", w.size(0), "], got ", bias.sizes());
}

// What the kernel does around the product (GemvParams).
struct Stages {
  const at::Tensor* bias = nullptr;
  bool accumulate = false;  // y += the product
  const at::Tensor* norm_weight = nullptr;
  double eps = 0;
  bool gated = false;
};

#ifdef LINEARIZE_WITH_CUDA
ElementType TypeOf(at::ScalarType type) {
  return type == at::kFloat  ? ElementType::kF32
         : type == at::kHalf ? ElementType::kF16
                             : ElementType::kBF16;
}

// Runs the kernel for y = x w^T with `stages` and returns true, or returns
// false when it does not apply. y: [rows, N] with unit last stride.
bool RunGemv(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w, const Stages& stages) {
  const at::Tensor bias = stages.bias != nullptr ? *stages.bias : at::Tensor();
  const at::Tensor norm = stages.norm_weight != nullptr ? *stages.norm_weight : at::Tensor();
  const at::ScalarType type = x.scalar_type();
  if (!gemv_enabled.load(std::memory_order_relaxed) || !x.is_cuda() || !w.is_cuda() ||
      (type != at::kFloat && type != at::kHalf && type != at::kBFloat16) ||
      w.scalar_type() != type || y.scalar_type() != type || !w.is_contiguous() ||
      (bias.defined() && (bias.scalar_type() != type || !bias.is_contiguous())) ||
      (norm.defined() &&
       (norm.scalar_type() != type || !norm.is_contiguous() || norm.device() != x.device())) ||
      x.device() != w.device()) {
    return false;
  }
  // The kernel has no backward.
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad()) ||
       (norm.defined() && norm.requires_grad()))) {
    return false;
  }
  const int64_t k = x.size(-1);
  if (x.numel() / std::max<int64_t>(k, 1) > kGemvMaxRows || x.stride(-1) != 1) return false;
  const at::Tensor rows = x.reshape({-1, k});  // a view when rows are evenly strided
  GemvParams p;
  p.x = rows.data_ptr();
  p.x_stride = rows.size(0) > 1 ? rows.stride(0) : k;
  p.w = w.data_ptr();
  p.bias = bias.defined() ? bias.data_ptr() : nullptr;
  p.y = y.data_ptr();
  p.y_stride = y.stride(0);
  if (stages.accumulate) {
    p.residual = y.data_ptr();
    p.residual_stride = y.stride(0);
  }
  p.norm_weight = norm.defined() ? norm.data_ptr() : nullptr;
  p.eps = static_cast<float>(stages.eps);
  p.gated = stages.gated;
  p.rows = rows.size(0);
  p.n = stages.gated ? w.size(0) / 2 : w.size(0);
  p.k = k;
  p.type = TypeOf(type);
  if (!GemvSupported(p)) return false;
  const c10::cuda::CUDAGuard guard(x.device());
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchGemv(p);
  TORCH_CHECK(err == nullptr, "Linear: CUDA launch failed: ", err);
  return true;
}
#endif

// Linear / NormLinear / NormGateUp on the kernel: the result, or undefined
// when the kernel does not apply.
at::Tensor TryGemv(const at::Tensor& x, const at::Tensor& w, int64_t out_features,
                   const Stages& stages) {
#ifdef LINEARIZE_WITH_CUDA
  if (x.is_cuda() && x.numel() <= kGemvMaxRows * x.size(-1)) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = out_features;
    at::Tensor y = at::empty(shape, x.options().memory_format(at::MemoryFormat::Contiguous));
    if (RunGemv(y.view({-1, out_features}), x, w, stages)) return y;
  }
#else
  (void)x, (void)w, (void)out_features, (void)stages;
#endif
  return {};
}

void CheckNormWeight(const char* op, const at::Tensor& x, const at::Tensor& norm_weight) {
  TORCH_CHECK(norm_weight.dim() == 1 && norm_weight.size(0) == x.size(-1), op,
              ": norm_weight must be [K] = [", x.size(-1), "], got ", norm_weight.sizes());
}

}  // namespace

void SetGemvEnabled(bool enabled) { gemv_enabled.store(enabled); }

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  CheckArguments("Linear", x, w, bias);
  if (at::Tensor y = TryGemv(x, w, w.size(0), {.bias = &bias}); y.defined()) return y;
  return bias.defined() ? at::linear(x, w, bias) : at::linear(x, w);
}

void AddLinear(const at::Tensor& residual, const at::Tensor& x, const at::Tensor& w) {
  CheckArguments("AddLinear", x, w, {});
  TORCH_CHECK(residual.is_contiguous() && residual.size(-1) == w.size(0) &&
                  residual.numel() / w.size(0) == x.numel() / std::max<int64_t>(x.size(-1), 1),
              "AddLinear: residual must be contiguous [..., N] = [..., ", w.size(0),
              "] with x's rows, got ", residual.sizes(), " for x ", x.sizes());
  const at::Tensor y = residual.view({-1, w.size(0)});
#ifdef LINEARIZE_WITH_CUDA
  if (RunGemv(y, x, w, {.accumulate = true})) return;
#endif
  y.addmm_(x.reshape({-1, x.size(-1)}), w.t());
}

at::Tensor NormLinear(const at::Tensor& x, const at::Tensor& norm_weight, double eps,
                      const at::Tensor& w, const at::Tensor& bias) {
  CheckArguments("NormLinear", x, w, bias);
  CheckNormWeight("NormLinear", x, norm_weight);
  const Stages stages{.bias = &bias, .norm_weight = &norm_weight, .eps = eps};
  if (at::Tensor y = TryGemv(x, w, w.size(0), stages); y.defined()) return y;
  return Linear(RmsNorm(x, norm_weight, eps), w, bias);
}

at::Tensor NormGateUp(const at::Tensor& x, const at::Tensor& norm_weight, double eps,
                      const at::Tensor& gate_up) {
  CheckArguments("NormGateUp", x, gate_up, {});
  CheckNormWeight("NormGateUp", x, norm_weight);
  TORCH_CHECK(gate_up.size(0) % 2 == 0,
              "NormGateUp: gate_up must be [2I, K] (gate rows, then up), got ", gate_up.sizes());
  const Stages stages{.norm_weight = &norm_weight, .eps = eps, .gated = true};
  if (at::Tensor y = TryGemv(x, gate_up, gate_up.size(0) / 2, stages); y.defined()) return y;
  return SiluMul(Linear(RmsNorm(x, norm_weight, eps), gate_up));
}

}  // namespace linearize::kernels
