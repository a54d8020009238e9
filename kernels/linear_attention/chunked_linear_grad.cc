#include "kernels/linear_attention/chunked_linear_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"

namespace linearize::kernels::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LinearGrads {
  at::Tensor d_phi_q, d_phi_k, d_v, d_log_gamma;  // in the inputs' heads
};

// Which of the forward's inputs were bfloat16 (the others float32 under autocast).
struct InputTypes {
  bool q_bf16 = false, k_bf16 = false, v_bf16 = false;
};

// The backward alone: gradients of num and den's inputs (bfloat16 phi_q
// [B, H, T, F], phi_k [B, Hk, T, F], v [B, Hv, T, D], optional float32
// log_gamma [B, Hg, T]), given float32 d_num [B, H, T, D] and d_den [B, H, T].
// The sizes were checked by ChunkedCausalLinearTrainCuda. A gradient comes
// out in bfloat16 where its input was bfloat16 and the kernel's rows are
// final (no sum over query heads, no gate gradient formed from it), so
// autograd has nothing to cast; else in float32.
LinearGrads ChunkedCausalLinearBackwardCuda(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                            const at::Tensor& v, const at::Tensor& log_gamma,
                                            const at::Tensor& d_num, const at::Tensor& d_den,
                                            InputTypes types) {
  const int64_t b = phi_q.size(0), h = phi_q.size(1), t = phi_q.size(2), f = phi_q.size(3);
  const int64_t d = v.size(3);
  const c10::cuda::CUDAGuard guard(phi_q.device());
  const at::Tensor q = phi_q.contiguous(), k = phi_k.contiguous(), vc = v.contiguous();
  const at::Tensor gc = log_gamma.defined() ? log_gamma.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor dn = d_num.to(at::kFloat).contiguous();
  const at::Tensor dd = d_den.to(at::kFloat).contiguous();
  ChunkedLinearBwdParams p;
  p.d_q_bf16 = types.q_bf16 && !gc.defined();
  p.d_k_bf16 = types.k_bf16 && !gc.defined() && k.size(1) == h;
  p.d_v_bf16 = types.v_bf16 && vc.size(1) == h;
  const auto grad_options = [&](bool bf16) {
    return phi_q.options().dtype(bf16 ? at::kBFloat16 : at::kFloat);
  };
  const at::Tensor dq = at::empty({b, h, t, f}, grad_options(p.d_q_bf16));
  const at::Tensor dk = at::empty({b, h, t, f}, grad_options(p.d_k_bf16));
  const at::Tensor dv = at::empty({b, h, t, d}, grad_options(p.d_v_bf16));
  p.phi_q = q.data_ptr();
  p.phi_k = k.data_ptr();
  p.v = vc.data_ptr();
  p.log_gamma = gc.defined() ? gc.data_ptr<float>() : nullptr;
  p.d_num = dn.data_ptr<float>();
  p.d_den = dd.data_ptr<float>();
  p.batch = b;
  p.heads = h;
  p.k_heads = k.size(1);
  p.v_heads = vc.size(1);
  p.g_heads = gc.defined() ? gc.size(1) : 0;
  p.length = t;
  p.feature_dim = f;
  p.head_dim = d;
  p.d_q = dq.data_ptr();
  p.d_k = dk.data_ptr();
  p.d_v = dv.data_ptr();
  p.sm_count = CurrentSmCount();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  PlanChunkedLinearBwd(p);
  at::Tensor workspace;
  if (const int64_t bytes = ChunkedLinearBwdWorkspaceBytes(p); bytes > 0) {
    workspace = at::empty({bytes}, phi_q.options().dtype(at::kByte));
    p.workspace = workspace.data_ptr();
  }
  const char* err = LaunchChunkedLinearBwd(p);
  TORCH_CHECK(err == nullptr, "ChunkedCausalLinearBackwardCuda: CUDA launch failed: ", err);
  CountCudaAttentionLaunch();

  LinearGrads out;
  out.d_phi_q = dq;
  out.d_phi_k = SumToKvHeads(dk, k.size(1));
  out.d_v = SumToKvHeads(dv, vc.size(1));
  if (gc.defined()) {
    // w_ij = exp(B_i - B_j), B = cumsum(log_gamma): dB_t = q_t . dq_t - k_t . dk_t
    // (per query head), and log_gamma_s enters every B_t with t >= s.
    const at::Tensor db = (q.to(at::kFloat) * dq).sum(-1) -
                          (ExpandKvHeads(k, h).to(at::kFloat) * dk).sum(-1);      // [B, H, T]
    out.d_log_gamma = SumToKvHeads(db, gc.size(1)).flip(-1).cumsum(-1).flip(-1);  // [B, Hg, T]
  }
  return out;
}

// Custom functions cannot take undefined tensors: no gate is an empty one.
at::Tensor GateOrNone(const at::Tensor& log_gamma) {
  return log_gamma.numel() > 0 ? log_gamma : at::Tensor();
}

struct ChunkedLinearFunction : public torch::autograd::Function<ChunkedLinearFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& phi_q,
                               const at::Tensor& phi_k, const at::Tensor& v,
                               const at::Tensor& gate_or_empty) {
    const at::Tensor log_gamma = GateOrNone(gate_or_empty);
    const at::Tensor q = phi_q.to(at::kBFloat16), k = phi_k.to(at::kBFloat16),
                     vb = v.to(at::kBFloat16);
    std::optional<LinearTerms> out =
        ChunkedCausalLinearTermsCuda(q, k, vb, log_gamma, /*want_state=*/true);
    TORCH_CHECK(out.has_value(), "ChunkedCausalLinearTrainCuda: the forward kernel declined");
    ctx->save_for_backward({q, k, vb, gate_or_empty});
    ctx->saved_data["q_bf16"] = phi_q.scalar_type() == at::kBFloat16;
    ctx->saved_data["k_bf16"] = phi_k.scalar_type() == at::kBFloat16;
    ctx->saved_data["v_bf16"] = v.scalar_type() == at::kBFloat16;
    ctx->mark_non_differentiable({out->kv, out->k_sum});
    return {out->num, out->den, out->kv, out->k_sum};
  }

  // Gradients in float32 or bfloat16 (see the backward above); autograd
  // casts each to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const InputTypes types{ctx->saved_data["q_bf16"].toBool(), ctx->saved_data["k_bf16"].toBool(),
                           ctx->saved_data["v_bf16"].toBool()};
    const LinearGrads g = ChunkedCausalLinearBackwardCuda(
        saved[0], saved[1], saved[2], GateOrNone(saved[3]), grads[0], grads[1], types);
    return {g.d_phi_q, g.d_phi_k, g.d_v, g.d_log_gamma};
  }
};

}  // namespace

std::optional<LinearTerms> ChunkedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                        const at::Tensor& phi_k,
                                                        const at::Tensor& v,
                                                        const at::Tensor& log_gamma) {
  if (!CudaTrainingApplies(phi_q.device(), {&phi_q, &phi_k, &v, &log_gamma}) ||
      !TrainsInBfloat16(phi_q) || !TrainsInBfloat16(phi_k) || !TrainsInBfloat16(v) ||
      phi_q.dim() != 4 || phi_k.dim() != 4 || v.dim() != 4 ||
      (log_gamma.defined() && log_gamma.dim() != 3)) {
    return std::nullopt;
  }
  // The backward kernel's own size rules (the forward's are the same or wider).
  ChunkedLinearBwdParams p;
  p.batch = phi_q.size(0);
  p.heads = phi_q.size(1);
  p.k_heads = phi_k.size(1);
  p.v_heads = v.size(1);
  p.g_heads = log_gamma.defined() ? log_gamma.size(1) : 0;
  p.length = phi_q.size(2);
  p.feature_dim = phi_q.size(3);
  p.head_dim = v.size(3);
  const auto same_bt = [&](const at::Tensor& x) {
    return x.size(0) == p.batch && x.size(2) == p.length;
  };
  if (!ChunkedLinearBwdSupported(p) || !same_bt(phi_k) || !same_bt(v) ||
      phi_k.size(3) != p.feature_dim ||
      (log_gamma.defined() && (p.g_heads < 1 || !same_bt(log_gamma)))) {
    return std::nullopt;
  }
  const at::Tensor gate_or_empty =
      log_gamma.defined() ? log_gamma : at::empty({0}, phi_q.options().dtype(at::kFloat));
  const variable_list out = ChunkedLinearFunction::apply(phi_q, phi_k, v, gate_or_empty);
  return LinearTerms{out[0], out[1], out[2], out[3]};
}

}  // namespace linearize::kernels::detail
