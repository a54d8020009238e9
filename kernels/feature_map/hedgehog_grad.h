// Training path of the Hedgehog feature map on the GPU (compiled only with
// LINEARIZE_WITH_CUDA): the map kernel (hedgehog_cuda.cu) forward and
// hedgehog_bwd_cuda.cu backward (dx and dW in one pass), as one
// differentiable op. Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <utility>

#include "kernels/feature_map/feature_map.h"

namespace linearize::kernels::detail {

// HedgehogFeatureMap(x, weight) with gradients for x [B, H, T, D] and
// weight [H, D, Fh]. Runs when autograd needs it and the kernels cover the
// inputs: CUDA, x bfloat16 (or float32 under CUDA autocast; computed in
// bfloat16 then, as autocast's matmul is), D in {64, 128}, Fh in {32, 64}.
// phi comes back in bfloat16, the gradients in the inputs' dtypes.
// Otherwise nullopt, and the caller takes the LibTorch form.
std::optional<at::Tensor> HedgehogFeatureMapTrainCuda(const at::Tensor& x,
                                                      const at::Tensor& weight);

// The same, also passing x through for a second consumer: {phi, x_pass},
// x_pass holding x's values. x's gradient is then d_x_pass + dl W_h^T, the
// addition inside the backward kernel, where autograd would add x's two
// gradients in a kernel of its own.
std::optional<std::pair<at::Tensor, at::Tensor>> HedgehogFeatureMapTrainCudaPassing(
    const at::Tensor& x, const at::Tensor& weight);

// The map kernel's forward for a differentiable op of the caller's own
// (which then runs one of the backwards below): x and weight [H, D, Fh] in
// bfloat16 as the backward reads them, x [B, H, T, D] and weight_t
// [H, Fh, D], and phi [B, H, T, 2 Fh]. Checks that the kernel covers them.
struct HedgehogForward {
  at::Tensor x, weight_t, phi;
};
HedgehogForward HedgehogForwardCuda(const at::Tensor& x, const at::Tensor& weight);

// The backward kernel alone, for a forward run elsewhere (LoLCATs' fused
// training forward): x [B, H, T, D] and weight_t [H, Fh, D] (W transposed)
// in bfloat16 as the forward read them, its bfloat16 phi, phi's gradient,
// and x's gradient from a second consumer to add in (or undefined).
// dx in bfloat16, d_weight [H, D, Fh] in float32.
struct HedgehogGrads {
  at::Tensor dx, d_weight;
};
HedgehogGrads HedgehogBackwardCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                   const at::Tensor& phi, const at::Tensor& d_phi,
                                   const at::Tensor& d_pass);

// The same from the gradient of the map's logits l = x W_h instead,
// dl [B, H, T, Fh] (ChunkedLinearTermsBackwardCuda forms it from its
// unrounded d_phi): the kernel then reads neither phi nor d_phi.
HedgehogGrads HedgehogBackwardFromLogitsCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                             const at::Tensor& dl, const at::Tensor& d_pass);

// d_weight [H, D, Fh] (float32) alone, for a caller that forms x's part
// dl W_h^T itself (LoLCATs' window backward kernels, folded): the kernel
// then reads only x and dl.
at::Tensor HedgehogWeightGradFromLogitsCuda(const at::Tensor& x, const at::Tensor& weight_t,
                                            const at::Tensor& dl);

// Whether a training step's features run on the kernels: autograd on CUDA
// through q, k, v or the maps, q/k/v bfloat16 (or float32 under autocast),
// Hedgehog maps the map kernel covers (Fh 32 or 64) or elu+1, and the F and
// D (64 or 128) the chunked kernels take. The recipes then prepare the
// features' inputs and v in bfloat16 instead of float32 copies.
bool FeaturesTrainOnKernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const FeatureMaps& maps);

}  // namespace linearize::kernels::detail
