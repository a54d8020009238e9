#include "kernels/lolcats/window_bwd_outputs.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace linearize::kernels::detail {

WindowInputTypes WindowInputTypes::Of(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v) {
  return {q.scalar_type() == at::kBFloat16,
          k.scalar_type() == at::kBFloat16 && v.scalar_type() == at::kBFloat16};
}

void WindowInputTypes::Save(torch::autograd::AutogradContext* ctx) const {
  ctx->saved_data["q_bf16"] = q_bf16;
  ctx->saved_data["kv_bf16"] = kv_bf16;
}

WindowInputTypes WindowInputTypes::Load(torch::autograd::AutogradContext* ctx) {
  return {ctx->saved_data["q_bf16"].toBool(), ctx->saved_data["kv_bf16"].toBool()};
}

WindowQkvGrads AllocWindowGrads(LolcatsWindowBwdParams& p, const at::Tensor& q,
                                WindowInputTypes types) {
  const at::TensorOptions f32 = q.options().dtype(at::kFloat);
  const at::TensorOptions bf16 = q.options().dtype(at::kBFloat16);
  p.d_q_bf16 = types.q_bf16;
  // Under grouped-query heads the per-query-head gradients are summed first.
  p.d_kv_bf16 = types.kv_bf16 && p.kv_heads == p.heads;
  WindowQkvGrads g;
  g.dq = at::empty(q.sizes(), p.d_q_bf16 ? bf16 : f32);
  g.dk = at::empty(q.sizes(), p.d_kv_bf16 ? bf16 : f32);
  g.dv = at::empty(q.sizes(), p.d_kv_bf16 ? bf16 : f32);
  p.d_q = g.dq.data_ptr();
  p.d_k = g.dk.data_ptr();
  p.d_v = g.dv.data_ptr();
  return g;
}

}  // namespace linearize::kernels::detail
