// The baseline's entry point and prefill: checks, then the chunked form
// (kernels/linear_attention/chunked_linear.h) with no gate.
#include <ATen/ATen.h>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/linear_attention.h"
#include "kernels/linear_attention/linear_attention_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/linear_attention/linear_attention_cuda.h"
#endif

namespace linearize::kernels::linear_attention {
namespace {

PrefillResult Run(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const FeatureMaps& maps, const Options& options, bool want_state) {
#ifdef LINEARIZE_WITH_CUDA
  // CUDA kernels (linear_attention_cuda.h) for the inputs they cover; they
  // check the arguments as Prepare does, and compute the features themselves.
  if (std::optional<PrefillResult> r =
          internal::PrefillCuda(op, q, k, v, maps, options, want_state)) {
    return std::move(*r);
  }
#endif
  const internal::Prepared p = internal::Prepare(op, q, k, v, maps, options);
  if (p.dims.length == 0) {
    return {at::empty_like(q), EmptyState(p.dims.batch, p.dims.q_heads, p.phi_q.size(3),
                                          p.dims.head_dim, p.v.options())};
  }
  // CUDA tensors the kernels do not cover (and autograd) take the LibTorch
  // form below, which runs on any device.
  const detail::LinearTerms terms =
      detail::ChunkedCausalLinear(p.phi_q, p.phi_k, p.v, at::Tensor(), options.chunk);
  const at::Tensor y = terms.num / (terms.den.unsqueeze(-1) + options.eps);
  return {y.to(q.scalar_type()), State{terms.kv.detach(), terms.k_sum.detach()}};
}

}  // namespace

at::Tensor ForwardParallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const FeatureMaps& maps, const Options& options) {
  return Run("linear_attention::ForwardParallel", q, k, v, maps, options, /*want_state=*/false).y;
}

PrefillResult Prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const FeatureMaps& maps, const Options& options) {
  return Run("linear_attention::Prefill", q, k, v, maps, options, /*want_state=*/true);
}

}  // namespace linearize::kernels::linear_attention
