#include "kernels/linear_attention/linear_attention_cuda.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/GradMode.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/linear_attention_args.h"
#include "kernels/linear_attention/linear_decode_params.h"

namespace linearize::kernels {

at::Tensor detail::KeyFeaturesForKernel(const FeatureMaps& maps, const at::Tensor& k,
                                        int64_t q_heads) {
  if (maps.kind == FeatureMapKind::kEluPlusOne) return EluPlusOneFeatureMap(k);
  if (maps.k_weight.size(0) == k.size(1)) return HedgehogFeatureMap(k, maps.k_weight);
  return KeyFeatures(maps, k, q_heads);
}

std::optional<detail::CudaLinearOutputs> detail::ChunkedCausalLinearOnMapsCuda(
    CudaLinearInputs in, const FeatureMaps& maps, const at::Tensor& q, const at::Tensor& k,
    int64_t q_heads) {
  if (maps.kind == FeatureMapKind::kHedgehog && q.scalar_type() == at::kBFloat16) {
    in.phi_q = q;  // the Hedgehog maps fused into the chunked kernel (bf16)
    in.phi_k = k;
    in.q_weight = maps.q_weight;
    in.k_weight = maps.k_weight;
    if (std::optional<CudaLinearOutputs> out = ChunkedCausalLinearCuda(in)) return out;
  }
  in.q_weight = in.k_weight = at::Tensor();
  in.phi_q = QueryFeatures(maps, q);
  in.phi_k = KeyFeaturesForKernel(maps, k, q_heads);
  return ChunkedCausalLinearCuda(in);
}

namespace linear_attention::internal {

std::optional<PrefillResult> PrefillCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const FeatureMaps& maps,
                                         const Options& options, bool want_state,
                                         const State* initial) {
  ElementType type;
  const at::Tensor* kv0 = initial != nullptr ? &initial->kv : nullptr;
  const at::Tensor* k_sum0 = initial != nullptr ? &initial->k_sum : nullptr;
  if (!q.defined() || !detail::KernelElementType(q.scalar_type(), &type) ||
      !detail::CudaKernelApplies(q.device(),
                                 {&q, &k, &v, &maps.q_weight, &maps.k_weight, kv0, k_sum0})) {
    return std::nullopt;
  }
  const detail::QkvDims dims = detail::CheckQkv(op, q, k, v);
  CheckFeatureMaps(op, maps, dims.q_heads, dims.kv_heads, dims.head_dim);
  detail::CheckChunk(op, options.chunk);
  TORCH_CHECK(options.eps >= 0, op, ": eps must be >= 0, got ", options.eps);
  if (initial != nullptr) {
    CheckState(op, *initial, dims, FeatureDim(maps, dims.head_dim), q);
  }
  if (dims.length == 0) return std::nullopt;
  const c10::NoGradGuard no_grad;
  detail::CudaLinearInputs in;
  in.v = v;
  in.eps = options.eps;
  in.want_state = want_state;
  if (initial != nullptr) {
    in.kv0 = initial->kv;
    in.k_sum0 = initial->k_sum;
  }
  std::optional<detail::CudaLinearOutputs> out =
      detail::ChunkedCausalLinearOnMapsCuda(in, maps, q, k, dims.q_heads);
  if (!out) return std::nullopt;
  if (initial != nullptr && want_state) {  // as DecodeStep keeps it
    out->kv = out->kv.to(initial->kv.scalar_type());
    out->k_sum = out->k_sum.to(initial->k_sum.scalar_type());
  }
  return PrefillResult{out->y, State{out->kv, out->k_sum}};
}

std::optional<at::Tensor> DecodeStepCuda(State& state, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const FeatureMaps& maps,
                                         const Options& options) {
  LinearDecodeParams p;
  if (!detail::KernelElementType(q.scalar_type(), &p.type) ||
      !detail::CudaKernelApplies(
          q.device(), {&q, &k, &v, &state.kv, &state.k_sum, &maps.q_weight, &maps.k_weight}) ||
      state.kv.scalar_type() != at::kFloat || state.k_sum.scalar_type() != at::kFloat ||
      !state.kv.is_contiguous() || !state.k_sum.is_contiguous()) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const bool hedgehog = maps.kind == FeatureMapKind::kHedgehog;
  detail::DecodeMapWeights w;
  if (hedgehog) {
    w = detail::ToDecodeMapWeights(maps.q_weight, maps.k_weight);
    p.weight_type = w.type;
  }
  p.batch = q.size(0);
  p.heads = q.size(1);
  p.kv_heads = k.size(1);
  p.head_dim = q.size(3);
  p.feature_dim = state.kv.size(2);
  p.q_weight = hedgehog ? w.q.data_ptr() : nullptr;
  p.k_weight = hedgehog ? w.k.data_ptr() : nullptr;
  p.k_weight_heads = hedgehog ? w.k.size(0) : 0;
  if (!LinearDecodeSupported(p)) return std::nullopt;
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor y = at::empty(q.sizes(), q.options());
  p.kv = state.kv.data_ptr<float>();
  p.k_sum = state.k_sum.data_ptr<float>();
  p.q = qc.data_ptr();
  p.k = kc.data_ptr();
  p.v = vc.data_ptr();
  p.y = y.data_ptr();
  p.eps = static_cast<float>(options.eps);
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchLinearDecode(p);
  TORCH_CHECK(err == nullptr, "linear_attention::DecodeStep: CUDA launch failed: ", err);
  detail::CountCudaAttentionLaunch();
  return y;
}

}  // namespace linear_attention::internal
}  // namespace linearize::kernels
