// The baseline's recurrent form: S += phi(k) v^T, z += phi(k), then
// y = phi(q) S / (phi(q) . z + eps), one token at a time.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/linear_attention.h"
#include "kernels/linear_attention/linear_attention_args.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/linear_attention/linear_attention_cuda.h"
#endif

namespace linearize::kernels::linear_attention {

State EmptyState(int64_t batch, int64_t q_heads, int64_t feature_dim, int64_t head_dim,
                 at::TensorOptions options) {
  const at::TensorOptions o = options.dtype(detail::ComputeType(options.dtype().toScalarType()));
  return State{at::zeros({batch, q_heads, feature_dim, head_dim}, o),
               at::zeros({batch, q_heads, feature_dim}, o)};
}

at::Tensor DecodeStep(State& state, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const FeatureMaps& maps, const Options& options) {
  constexpr const char* kOp = "linear_attention::DecodeStep";
  const detail::QkvDims dims = detail::CheckQkv(kOp, q, k, v);
  TORCH_CHECK(dims.length == 1, kOp, ": decodes one token, q must be [B, Hq, 1, D], got ",
              q.sizes());
  CheckFeatureMaps(kOp, maps, dims.q_heads, dims.kv_heads, dims.head_dim);
  TORCH_CHECK(options.eps >= 0, kOp, ": eps must be >= 0, got ", options.eps);
  const int64_t f = FeatureDim(maps, dims.head_dim);
  internal::CheckState(kOp, state, dims, f, q);

#ifdef LINEARIZE_WITH_CUDA
  // Batched decode kernel (linear_decode_cuda.cu) for the inputs it covers.
  if (std::optional<at::Tensor> y = internal::DecodeStepCuda(state, q, k, v, maps, options)) {
    return *y;
  }
#endif
  const c10::NoGradGuard no_grad;
  const at::ScalarType ct = state.kv.scalar_type();
  const at::Tensor phi_q = QueryFeatures(maps, q.to(ct));               // [B, Hq, 1, F]
  const at::Tensor phi_k = KeyFeatures(maps, k.to(ct), dims.q_heads);   // [B, Hq, 1, F]
  const at::Tensor vv = detail::ExpandKvHeads(v.to(ct), dims.q_heads);  // [B, Hq, 1, D]
  state.kv.add_(at::matmul(phi_k.transpose(-1, -2), vv));
  state.k_sum.add_(phi_k.squeeze(2));
  const at::Tensor num = at::matmul(phi_q, state.kv);                                 // [B,Hq,1,D]
  const at::Tensor den = at::matmul(phi_q, state.k_sum.unsqueeze(-1)) + options.eps;  // [B,Hq,1,1]
  return (num / den).to(q.scalar_type());
}

}  // namespace linearize::kernels::linear_attention
