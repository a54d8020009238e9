// The baseline's entry point and prefill: checks, then the chunked form
// (kernels/linear_attention/chunked_linear.h) with no gate, from the empty
// state or from the one a prefill continues.
#include <ATen/ATen.h>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/linear_attention.h"
#include "kernels/linear_attention/linear_attention_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/feature_map/hedgehog_grad.h"
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/linear_attention/linear_attention_cuda.h"
#endif

namespace linearize::kernels::linear_attention {
namespace {

PrefillResult Run(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const FeatureMaps& maps, const Options& options, bool want_state,
                  const State* initial) {
#ifdef LINEARIZE_WITH_CUDA
  // CUDA kernels (linear_attention_cuda.h) for the inputs they cover; they
  // check the arguments as Prepare does, and compute the features themselves.
  if (std::optional<PrefillResult> r =
          internal::PrefillCuda(op, q, k, v, maps, options, want_state, initial)) {
    return std::move(*r);
  }
#endif
  std::optional<at::ScalarType> compute;
#ifdef LINEARIZE_WITH_CUDA
  if (!want_state && initial == nullptr && detail::FeaturesTrainOnKernels(q, k, v, maps)) {
    compute = at::kBFloat16;
  }
#endif
  const internal::Prepared p = internal::Prepare(op, q, k, v, maps, options, compute);
  at::Tensor kv0, k_sum0;  // the state before the prompt, in the compute dtype
  if (initial != nullptr) {
    internal::CheckState(op, *initial, p.dims, p.phi_q.size(3), q);
    kv0 = initial->kv.detach().to(p.v.scalar_type());
    k_sum0 = initial->k_sum.detach().to(p.v.scalar_type());
  }
  if (p.dims.length == 0) {
    if (initial != nullptr) {
      return {at::empty_like(q),
              State{initial->kv.detach().clone(), initial->k_sum.detach().clone()}};
    }
    return {at::empty_like(q), EmptyState(p.dims.batch, p.dims.q_heads, p.phi_q.size(3),
                                          p.dims.head_dim, p.v.options())};
  }
#ifdef LINEARIZE_WITH_CUDA
  // Training on the GPU from the empty state: y straight from the kernels
  // (chunked_linear_grad.h), no state wanted.
  if (!want_state && initial == nullptr) {
    if (std::optional<detail::NormalizedLinear> lin = detail::NormalizedCausalLinearTrainCuda(
            p.phi_q, p.phi_k, p.v, at::Tensor(), options.eps)) {
      return {lin->y.to(q.scalar_type()), State{}};
    }
  }
#endif
  // CUDA tensors the kernels do not cover (and autograd) take the LibTorch
  // form below, which runs on any device.
  const detail::LinearTerms terms =
      detail::ChunkedCausalLinear(p.phi_q, p.phi_k, p.v, at::Tensor(), options.chunk, kv0, k_sum0);
  const at::Tensor y = terms.num / (terms.den.unsqueeze(-1) + options.eps);
  // A continued state keeps its dtype, as DecodeStep keeps it.
  const at::ScalarType st = initial != nullptr ? initial->kv.scalar_type() : p.v.scalar_type();
  return {y.to(q.scalar_type()), State{terms.kv.detach().to(st), terms.k_sum.detach().to(st)}};
}

}  // namespace

at::Tensor ForwardParallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const FeatureMaps& maps, const Options& options) {
  return Run("linear_attention::ForwardParallel", q, k, v, maps, options, /*want_state=*/false,
             /*initial=*/nullptr)
      .y;
}

PrefillResult Prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const FeatureMaps& maps, const Options& options, const State* initial) {
  return Run("linear_attention::Prefill", q, k, v, maps, options, /*want_state=*/true, initial);
}

}  // namespace linearize::kernels::linear_attention
