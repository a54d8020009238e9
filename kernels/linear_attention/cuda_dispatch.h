// Helpers shared by the ATen-side CUDA dispatchers of the attention families
// (compiled only with LINEARIZE_WITH_CUDA). Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/rmsnorm/rmsnorm_params.h"  // ElementType

namespace linearize::kernels::detail {

// Whether the attention entry points may use their CUDA kernels (default
// true). Benchmarks switch them off to time the LibTorch form on the GPU.
// Not synchronised: set it before any work starts.
bool CudaAttentionEnabled();
void SetCudaAttentionEnabled(bool enabled);

// True when a kernel may run for these tensors: all defined ones are CUDA
// tensors on `device`, and no autograd graph is needed through them
// (training goes through chunked_linear_grad.h instead).
bool CudaKernelApplies(const at::Device& device, std::initializer_list<const at::Tensor*> tensors);

// The training twin: kernels switched on, `device` is CUDA, all defined
// tensors are on it, grad mode is on and at least one of them requires grad.
bool CudaTrainingApplies(const at::Device& device,
                         std::initializer_list<const at::Tensor*> tensors);

// Whether the training kernels take x as it is: bfloat16, or float32 while
// CUDA autocast is on (they compute it in bfloat16, as autocast's matmuls do).
bool TrainsInBfloat16(const at::Tensor& x);

// Number of attention/feature-map kernel launches made through the
// dispatchers since start (tests use it to prove a kernel, not the LibTorch
// fallback, produced a result). Not synchronised, like the switch above.
int64_t CudaAttentionLaunchCount();
void CountCudaAttentionLaunch();
// The feature-map kernels' share of that count (CountCudaFeatureMapLaunch
// counts a launch in both), so tests can tell the attention kernels from
// the LibTorch forms, whose features also come from the map kernel.
int64_t CudaFeatureMapLaunchCount();
void CountCudaFeatureMapLaunch();

// kF32 / kBF16 for float32 / bfloat16; false for any other dtype.
bool KernelElementType(at::ScalarType type, ElementType* out);

// Number of multiprocessors of the current device.
int CurrentSmCount();

// CTAs per (row, head) for the hybrids' decode kernels, which split a head's
// output columns: as many as fit in one wave of the current device, up to 4
// (each CTA keeps at least 4 columns per split), else 1.
int64_t DecodeColumnSplits(int64_t batch, int64_t heads, int64_t head_dim);

// The Hedgehog map weights as the decode kernels read them, contiguous: kept
// in bfloat16 when both are, else float32 (exact for the float32 the LibTorch
// form computes in). A cast per layer per decode step is avoided when the
// weights already are in one of those.
struct DecodeMapWeights {
  at::Tensor q, k;
  ElementType type = ElementType::kF32;
};
DecodeMapWeights ToDecodeMapWeights(const at::Tensor& q_weight, const at::Tensor& k_weight);

}  // namespace linearize::kernels::detail
