#include "kernels/linear_attention/cuda_dispatch.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/GradMode.h>

namespace linearize::kernels::detail {
namespace {
bool g_enabled = true;
int64_t g_launches = 0;
int64_t g_map_launches = 0;
}  // namespace

int64_t CudaAttentionLaunchCount() { return g_launches; }
void CountCudaAttentionLaunch() { ++g_launches; }
int64_t CudaFeatureMapLaunchCount() { return g_map_launches; }
void CountCudaFeatureMapLaunch() {
  ++g_launches;
  ++g_map_launches;
}

bool CudaAttentionEnabled() { return g_enabled; }
void SetCudaAttentionEnabled(bool enabled) { g_enabled = enabled; }

bool CudaKernelApplies(const at::Device& device, std::initializer_list<const at::Tensor*> tensors) {
  if (!g_enabled || !device.is_cuda()) return false;
  const bool grad = c10::GradMode::is_enabled();
  for (const at::Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (t->device() != device) return false;
    if (grad && t->requires_grad()) return false;
  }
  return true;
}

bool CudaTrainingApplies(const at::Device& device,
                         std::initializer_list<const at::Tensor*> tensors) {
  if (!g_enabled || !device.is_cuda() || !c10::GradMode::is_enabled()) return false;
  bool needs_grad = false;
  for (const at::Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (t->device() != device) return false;
    needs_grad = needs_grad || t->requires_grad();
  }
  return needs_grad;
}

bool TrainsInBfloat16(const at::Tensor& x) {
  return x.scalar_type() == at::kBFloat16 ||
         (x.scalar_type() == at::kFloat && at::autocast::is_autocast_enabled(at::kCUDA));
}

bool KernelElementType(at::ScalarType type, ElementType* out) {
  if (type == at::kFloat) {
    *out = ElementType::kF32;
    return true;
  }
  if (type == at::kBFloat16) {
    *out = ElementType::kBF16;
    return true;
  }
  return false;
}

int CurrentSmCount() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

int64_t DecodeColumnSplits(int64_t batch, int64_t heads, int64_t head_dim) {
  const int64_t sms = CurrentSmCount();
  for (const int64_t splits : {4, 2}) {
    if (batch * heads * splits <= sms && head_dim % (4 * splits) == 0) return splits;
  }
  return 1;
}

DecodeMapWeights ToDecodeMapWeights(const at::Tensor& q_weight, const at::Tensor& k_weight) {
  const bool bf16 =
      q_weight.scalar_type() == at::kBFloat16 && k_weight.scalar_type() == at::kBFloat16;
  const at::ScalarType wt = bf16 ? at::kBFloat16 : at::kFloat;
  return {q_weight.to(wt).contiguous(), k_weight.to(wt).contiguous(),
          bf16 ? ElementType::kBF16 : ElementType::kF32};
}

}  // namespace linearize::kernels::detail
