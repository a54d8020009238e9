#include "kernels/linear_attention/chunked_linear_grad.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "kernels/feature_map/hedgehog_dispatch.h"
#include "kernels/feature_map/hedgehog_grad.h"
#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/chunked_linear_bwd_params.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/gate_grad_params.h"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"

namespace linearize::kernels::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LinearGrads {
  at::Tensor d_phi_q, d_phi_k, d_v, d_log_gamma;  // in the inputs' heads
};

// What the forward saw beside its saved bfloat16 copies: which inputs were
// bfloat16 (the others float32 under autocast), the key delay, and the
// chunks per block of its two-pass split (0: one block), whose block states
// (saved with the inputs) the backward reuses.
struct ForwardFacts {
  bool q_bf16 = false, k_bf16 = false, v_bf16 = false;
  int64_t key_delay = 0;
  int64_t block_chunks = 0;

  void Save(AutogradContext* ctx) const {
    ctx->saved_data["q_bf16"] = q_bf16;
    ctx->saved_data["k_bf16"] = k_bf16;
    ctx->saved_data["v_bf16"] = v_bf16;
    ctx->saved_data["key_delay"] = key_delay;
    ctx->saved_data["block_chunks"] = block_chunks;
  }
  static ForwardFacts Of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         int64_t key_delay, int64_t block_chunks) {
    return {q.scalar_type() == at::kBFloat16, k.scalar_type() == at::kBFloat16,
            v.scalar_type() == at::kBFloat16, key_delay, block_chunks};
  }
  static ForwardFacts Load(AutogradContext* ctx) {
    return {ctx->saved_data["q_bf16"].toBool(), ctx->saved_data["k_bf16"].toBool(),
            ctx->saved_data["v_bf16"].toBool(), ctx->saved_data["key_delay"].toInt(),
            ctx->saved_data["block_chunks"].toInt()};
  }
};

// The gradient the backward starts from: float32 d_num [B, H, T, D] and
// d_den [B, H, T]; or, for the normalised form y = num / z, dy and the
// forward's float32 num [B, H, T, D] and z [B, H, T]. d_v_pass: the gradient
// of the passed-through v (another op's, e.g. the window's), or undefined.
// block_states: the forward's two-pass workspace, or undefined.
struct OutputGrads {
  at::Tensor d_num, d_den;
  at::Tensor dy, num, z;
  at::Tensor d_v_pass;
  at::Tensor block_states;
};

// The backward alone: gradients of the inputs (bfloat16 phi_q [B, H, T, F],
// phi_k [B, Hk, T, F], v [B, Hv, T, D], optional float32 log_gamma
// [B, Hg, T]). The sizes were checked by TrainApplies. A gradient comes out
// in bfloat16 where its input was bfloat16 and the kernel's rows are final
// (no sum over query heads follows), so autograd has nothing to cast; else
// in float32. The gates' gradient comes from per-row dots the kernels form
// from the unrounded d_q and d_k. The passed-through v's gradient is added
// into d_v by the kernel where both are bf16 in the query heads, else after.
// hedgehog_logits: d_phi_q and d_phi_k are the Hedgehog logits' gradients
// instead (ChunkedLinearBwdParams::hedgehog_logits; wgmma kernels only).
LinearGrads ChunkedCausalLinearBackwardCuda(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                            const at::Tensor& v, const at::Tensor& log_gamma,
                                            const OutputGrads& og, const ForwardFacts& facts,
                                            bool hedgehog_logits = false) {
  const int64_t b = phi_q.size(0), h = phi_q.size(1), t = phi_q.size(2), f = phi_q.size(3);
  const int64_t d = v.size(3);
  const c10::cuda::CUDAGuard guard(phi_q.device());
  const at::Tensor q = phi_q.contiguous(), k = phi_k.contiguous(), vc = v.contiguous();
  const at::Tensor gc = log_gamma.defined() ? log_gamma.to(at::kFloat).contiguous() : at::Tensor();
  ChunkedLinearBwdParams p;
  at::Tensor dn, dd, dy, num, z;
  if (og.d_num.defined()) {
    p.d_num_bf16 = og.d_num.scalar_type() == at::kBFloat16;
    dn = (p.d_num_bf16 ? og.d_num : og.d_num.to(at::kFloat)).contiguous();
    dd = og.d_den.to(at::kFloat).contiguous();
    p.d_num = dn.data_ptr();
  } else {
    dy = og.dy.to(at::kBFloat16).contiguous();
    num = og.num.contiguous();
    z = og.z.contiguous();
    dd = at::empty({b, h, t}, z.options());  // the kernels fill it
    p.dy = dy.data_ptr();
    p.num = num.data_ptr<float>();
    p.z = z.data_ptr<float>();
  }
  p.d_den = dd.data_ptr<float>();
  p.d_q_bf16 = facts.q_bf16;
  p.d_k_bf16 = facts.k_bf16 && k.size(1) == h;
  p.d_v_bf16 = facts.v_bf16 && vc.size(1) == h;
  const auto grad_options = [&](bool bf16) {
    return phi_q.options().dtype(bf16 ? at::kBFloat16 : at::kFloat);
  };
  const int64_t f_out = hedgehog_logits ? f / 2 : f;
  const at::Tensor dq = at::empty({b, h, t, f_out}, grad_options(p.d_q_bf16));
  const at::Tensor dk = at::empty({b, h, t, f_out}, grad_options(p.d_k_bf16));
  const at::Tensor dv = at::empty({b, h, t, d}, grad_options(p.d_v_bf16));
  p.phi_q = q.data_ptr();
  p.phi_k = k.data_ptr();
  p.v = vc.data_ptr();
  p.log_gamma = gc.defined() ? gc.data_ptr<float>() : nullptr;
  p.batch = b;
  p.heads = h;
  p.k_heads = k.size(1);
  p.v_heads = vc.size(1);
  p.g_heads = gc.defined() ? gc.size(1) : 0;
  p.length = t;
  p.feature_dim = f;
  p.head_dim = d;
  p.key_delay = facts.key_delay;
  p.hedgehog_logits = hedgehog_logits;
  p.d_q = dq.data_ptr();
  p.d_k = dk.data_ptr();
  p.d_v = dv.data_ptr();
  const at::Tensor& d_pass = og.d_v_pass;
  const bool add_in_kernel = d_pass.defined() && p.d_v_bf16 &&
                             d_pass.scalar_type() == at::kBFloat16 && d_pass.is_contiguous() &&
                             d_pass.sizes() == dv.sizes();
  if (add_in_kernel) p.d_v_add = d_pass.data_ptr();
  at::Tensor q_dot, k_dot;  // gated: the kernels' per-row dots for the gates' gradient
  if (gc.defined()) {
    q_dot = at::zeros({b, h, t}, phi_q.options().dtype(at::kFloat));
    k_dot = at::zeros({b, h, t}, phi_q.options().dtype(at::kFloat));
    p.q_dot_dq = q_dot.data_ptr<float>();
    p.k_dot_dk = k_dot.data_ptr<float>();
  }
  p.sm_count = CurrentSmCount();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  if (og.block_states.defined() && facts.block_chunks > 0) {
    p.fwd_block_states = static_cast<const float*>(og.block_states.data_ptr());
    p.fwd_block_chunks = facts.block_chunks;
  }
  PlanChunkedLinearBwd(p);
  at::Tensor workspace;
  if (const int64_t bytes = ChunkedLinearBwdWorkspaceBytes(p); bytes > 0) {
    workspace = at::empty({bytes}, phi_q.options().dtype(at::kByte));
    p.workspace = workspace.data_ptr();
  }
  // d_q and d_k / d_v on wgmma where they cover the call, after the kernels
  // that fill d_den and the reverse block states.
  const bool wgmma = WgmmaKernelsApply(phi_q.device());
  p.skip_dq = wgmma && ChunkedLinearDqWgmmaSupported(p);
  p.skip_dkv = wgmma && ChunkedLinearDkvWgmmaSupported(p);
  TORCH_CHECK(!hedgehog_logits || (p.skip_dq && p.skip_dkv),
              "ChunkedCausalLinearBackwardCuda: the Hedgehog logits' gradients need the wgmma "
              "kernels, which do not cover this call");
  const char* err = LaunchChunkedLinearBwd(p);
  if (err == nullptr && p.skip_dq) err = LaunchChunkedLinearDqWgmma(p);
  if (err == nullptr && p.skip_dkv) err = LaunchChunkedLinearDkvWgmma(p);
  TORCH_CHECK(err == nullptr, "ChunkedCausalLinearBackwardCuda: CUDA launch failed: ", err);
  CountCudaAttentionLaunch();
  if (facts.key_delay > 0) {  // the last key_delay keys reach no query
    const int64_t tail = std::min(t, facts.key_delay);
    dk.narrow(2, t - tail, tail).zero_();
    if (add_in_kernel) {
      dv.narrow(2, t - tail, tail).copy_(d_pass.narrow(2, t - tail, tail));
    } else {
      dv.narrow(2, t - tail, tail).zero_();
    }
  }

  LinearGrads out;
  out.d_phi_q = dq;
  out.d_phi_k = SumToKvHeads(dk, k.size(1));
  out.d_v = SumToKvHeads(dv, vc.size(1));
  if (d_pass.defined() && !add_in_kernel) out.d_v = out.d_v + d_pass;
  if (gc.defined()) {
    out.d_log_gamma = GateGradientCuda(q_dot, k_dot, gc.size(1));
  }
  return out;
}

// Custom functions cannot take undefined tensors: no gate is an empty one.
at::Tensor GateOrNone(const at::Tensor& log_gamma) {
  return log_gamma.numel() > 0 ? log_gamma : at::Tensor();
}

// The forward kernel on bfloat16 copies of the inputs (no-ops when they are
// bfloat16 already).
struct Bf16Inputs {
  at::Tensor q, k, v;
  Bf16Inputs(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v_in)
      : q(phi_q.to(at::kBFloat16)), k(phi_k.to(at::kBFloat16)), v(v_in.to(at::kBFloat16)) {}
};

CudaLinearOutputs RunForward(const Bf16Inputs& in, const at::Tensor& log_gamma,
                             CudaLinearInputs spec) {
  spec.phi_q = in.q;
  spec.phi_k = in.k;
  spec.v = in.v;
  spec.log_gamma = log_gamma;
  std::optional<CudaLinearOutputs> out = ChunkedCausalLinearCuda(spec);
  TORCH_CHECK(out.has_value(), "ChunkedCausalLinearTrainCuda: the forward kernel declined");
  return std::move(*out);
}

// With pass_v, the forward also outputs v itself (autograd makes it a view
// whose gradient comes back to this op's backward, which adds it into d_v).
struct ChunkedLinearFunction : public torch::autograd::Function<ChunkedLinearFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& phi_q,
                               const at::Tensor& phi_k, const at::Tensor& v,
                               const at::Tensor& gate_or_empty, int64_t key_delay, bool pass_v) {
    const Bf16Inputs in(phi_q, phi_k, v);
    CudaLinearInputs spec;
    spec.key_delay = key_delay;
    spec.want_y = false;
    spec.want_num_den = true;
    spec.num_in_input_dtype = true;  // bf16: the backward reads its gradient in bf16 too
    spec.want_state = true;
    spec.keep_block_states = true;
    const CudaLinearOutputs out = RunForward(in, GateOrNone(gate_or_empty), spec);
    ctx->save_for_backward({in.q, in.k, in.v, gate_or_empty, out.block_states});
    ForwardFacts::Of(phi_q, phi_k, v, key_delay, out.block_chunks).Save(ctx);
    ctx->mark_non_differentiable({out.kv, out.k_sum});
    if (pass_v) return {out.num, out.den, out.kv, out.k_sum, v};
    return {out.num, out.den, out.kv, out.k_sum};
  }

  // Gradients in float32 or bfloat16 (ChunkedCausalLinearBackwardCuda);
  // autograd casts each to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    OutputGrads og;
    og.d_num = grads[0];
    og.d_den = grads[1];
    if (grads.size() > 4) og.d_v_pass = grads[4];
    og.block_states = s[4];
    const LinearGrads g = ChunkedCausalLinearBackwardCuda(s[0], s[1], s[2], GateOrNone(s[3]), og,
                                                          ForwardFacts::Load(ctx));
    return {g.d_phi_q, g.d_phi_k, g.d_v, g.d_log_gamma, at::Tensor(), at::Tensor()};
  }
};

// pass_v as in ChunkedLinearFunction. With the Hedgehog maps' weights
// q_weight and k_weight ([H, D, Fh]; empty tensors without), x_q and x_k are
// the maps' inputs and the maps run here too: the backward's kernels form
// the maps' logits' gradients (no phi or d_phi for the maps to read) and the
// maps' kernel dx and dW from them. Without, x_q and x_k are the features.
struct NormalizedLinearFunction : public torch::autograd::Function<NormalizedLinearFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x_q, const at::Tensor& x_k,
                               const at::Tensor& v, const at::Tensor& gate_or_empty,
                               const at::Tensor& q_weight, const at::Tensor& k_weight, double eps,
                               bool pass_v) {
    const bool maps = q_weight.numel() > 0;
    HedgehogForward mq, mk;
    if (maps) {
      mq = HedgehogForwardCuda(x_q, q_weight);
      mk = HedgehogForwardCuda(x_k, k_weight);
    }
    const Bf16Inputs in(maps ? mq.phi : x_q, maps ? mk.phi : x_k, v);
    CudaLinearInputs spec;
    spec.eps = eps;
    spec.want_y = true;
    spec.want_num_den = true;  // for the backward
    spec.keep_block_states = true;
    const CudaLinearOutputs out = RunForward(in, GateOrNone(gate_or_empty), spec);
    const at::Tensor z = out.den + eps;  // the kernel's y = num / (den + eps)
    ctx->save_for_backward({in.q, in.k, in.v, gate_or_empty, out.num, z, out.block_states, mq.x,
                            mq.weight_t, mk.x, mk.weight_t});
    ForwardFacts facts = ForwardFacts::Of(x_q, x_k, v, 0, out.block_chunks);
    if (maps) facts.q_bf16 = facts.k_bf16 = true;  // the logits' gradients, as the maps read them
    facts.Save(ctx);
    if (pass_v) return {out.y, v};
    return {out.y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    OutputGrads og;
    og.dy = grads[0];
    og.num = s[4];
    og.z = s[5];
    og.block_states = s[6];
    if (grads.size() > 1) og.d_v_pass = grads[1];
    const bool maps = s[7].defined();
    const LinearGrads g = ChunkedCausalLinearBackwardCuda(s[0], s[1], s[2], GateOrNone(s[3]), og,
                                                          ForwardFacts::Load(ctx), maps);
    if (!maps) {
      return {g.d_phi_q,    g.d_phi_k,    g.d_v,        g.d_log_gamma,
              at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const HedgehogGrads mq = HedgehogBackwardFromLogitsCuda(s[7], s[8], g.d_phi_q, at::Tensor());
    const HedgehogGrads mk = HedgehogBackwardFromLogitsCuda(s[9], s[10], g.d_phi_k, at::Tensor());
    return {mq.dx,       mk.dx,       g.d_v,        g.d_log_gamma,
            mq.d_weight, mk.d_weight, at::Tensor(), at::Tensor()};
  }
};

// Whether both kernels cover the inputs' dtypes and sizes.
bool KernelsCover(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                  const at::Tensor& log_gamma, int64_t key_delay) {
  if (!TrainsInBfloat16(phi_q) || !TrainsInBfloat16(phi_k) || !TrainsInBfloat16(v) ||
      phi_q.dim() != 4 || phi_k.dim() != 4 || v.dim() != 4 ||
      (log_gamma.defined() && log_gamma.dim() != 3)) {
    return false;
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
  p.key_delay = key_delay;
  const auto same_bt = [&](const at::Tensor& x) {
    return x.size(0) == p.batch && x.size(2) == p.length;
  };
  return ChunkedLinearBwdSupported(p) && same_bt(phi_k) && same_bt(v) &&
         phi_k.size(3) == p.feature_dim &&
         (!log_gamma.defined() || (p.g_heads >= 1 && same_bt(log_gamma)));
}

// Whether both kernels run the inputs (training on CUDA in bfloat16).
bool TrainApplies(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                  const at::Tensor& log_gamma, int64_t key_delay) {
  return CudaTrainingApplies(phi_q.device(), {&phi_q, &phi_k, &v, &log_gamma}) &&
         KernelsCover(phi_q, phi_k, v, log_gamma, key_delay);
}

at::Tensor GateOrEmpty(const at::Tensor& log_gamma, const at::Tensor& like) {
  return log_gamma.defined() ? log_gamma : at::empty({0}, like.options().dtype(at::kFloat));
}

}  // namespace

LinearTermGrads ChunkedLinearTermsBackwardCuda(const at::Tensor& phi_q, const at::Tensor& phi_k,
                                               const at::Tensor& v, const at::Tensor& d_num,
                                               const at::Tensor& d_den, const at::Tensor& d_v_pass,
                                               const at::Tensor& block_states, int64_t block_chunks,
                                               int64_t key_delay, bool hedgehog_logits) {
  OutputGrads og;
  og.d_num = d_num;
  og.d_den = d_den;
  og.d_v_pass = d_v_pass;
  og.block_states = block_states;
  // bfloat16 feature (or logits') gradients (the maps' backward reads them
  // so) and v's in v's dtype.
  const ForwardFacts facts{true, true, v.scalar_type() == at::kBFloat16, key_delay, block_chunks};
  const LinearGrads g =
      ChunkedCausalLinearBackwardCuda(phi_q, phi_k, v, at::Tensor(), og, facts, hedgehog_logits);
  return {g.d_phi_q, g.d_phi_k, g.d_v};
}

std::optional<LinearTerms> ChunkedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                        const at::Tensor& phi_k,
                                                        const at::Tensor& v,
                                                        const at::Tensor& log_gamma,
                                                        int64_t key_delay, bool pass_v) {
  if (!TrainApplies(phi_q, phi_k, v, log_gamma, key_delay)) return std::nullopt;
  const variable_list out = ChunkedLinearFunction::apply(
      phi_q, phi_k, v, GateOrEmpty(log_gamma, phi_q), key_delay, pass_v);
  LinearTerms terms{out[0], out[1], out[2], out[3]};
  if (pass_v) terms.v_pass = out[4];
  return terms;
}

std::optional<NormalizedLinear> NormalizedCausalLinearTrainCuda(const at::Tensor& phi_q,
                                                                const at::Tensor& phi_k,
                                                                const at::Tensor& v,
                                                                const at::Tensor& log_gamma,
                                                                double eps, bool pass_v) {
  if (!TrainApplies(phi_q, phi_k, v, log_gamma, 0)) return std::nullopt;
  const at::Tensor none = at::empty({0}, phi_q.options());
  const variable_list out = NormalizedLinearFunction::apply(
      phi_q, phi_k, v, GateOrEmpty(log_gamma, phi_q), none, none, eps, pass_v);
  return NormalizedLinear{out[0], pass_v ? out[1] : at::Tensor()};
}

std::optional<NormalizedLinear> HedgehogNormalizedLinearTrainCuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& log_gamma,
    const at::Tensor& q_weight, const at::Tensor& k_weight, double eps, bool pass_v) {
  if (!q_weight.defined() || !k_weight.defined() ||
      !CudaTrainingApplies(q.device(), {&q, &k, &v, &log_gamma, &q_weight, &k_weight}) ||
      !at::isFloatingType(q_weight.scalar_type()) || !at::isFloatingType(k_weight.scalar_type()) ||
      !HedgehogShape(q, q_weight) || !HedgehogShape(k, k_weight) ||
      !WgmmaKernelsApply(q.device())) {
    return std::nullopt;
  }
  // The logits' gradients come from the wgmma kernels: F = 2 Fh = D = 128,
  // so q and k have the features' sizes and KernelsCover reads them as such.
  if (q.size(3) != 128 || q_weight.size(2) != 64 || k_weight.size(2) != 64 ||
      !KernelsCover(q, k, v, log_gamma, 0)) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  // The gates as float32 only once the kernels take the call (a caller that
  // falls back pays no copy).
  const at::Tensor gates = log_gamma.defined() ? log_gamma.to(at::kFloat) : log_gamma;
  const variable_list out = NormalizedLinearFunction::apply(q, k, v, GateOrEmpty(gates, q),
                                                            q_weight, k_weight, eps, pass_v);
  return NormalizedLinear{out[0], pass_v ? out[1] : at::Tensor()};
}

at::Tensor GateGradientCuda(const at::Tensor& q_dot, const at::Tensor& k_dot, int64_t g_heads) {
  TORCH_CHECK(q_dot.is_cuda() && q_dot.scalar_type() == at::kFloat && q_dot.dim() == 3 &&
                  q_dot.is_contiguous() && k_dot.sizes() == q_dot.sizes() &&
                  k_dot.scalar_type() == at::kFloat && k_dot.is_contiguous() &&
                  k_dot.device() == q_dot.device(),
              "GateGradientCuda: q_dot and k_dot must be contiguous float32 [B, H, T] on one "
              "CUDA device, got ",
              q_dot.sizes(), " ", q_dot.scalar_type(), " and ", k_dot.sizes(), " ",
              k_dot.scalar_type());
  TORCH_CHECK(g_heads >= 1 && q_dot.size(1) % g_heads == 0, "GateGradientCuda: ", g_heads,
              " gate heads must divide the ", q_dot.size(1), " query heads");
  const c10::cuda::CUDAGuard guard(q_dot.device());
  const at::Tensor out = at::empty({q_dot.size(0), g_heads, q_dot.size(2)}, q_dot.options());
  if (out.numel() == 0) return out;  // (no rows or no positions: nothing to sum)
  GateGradParams p;
  p.batch = q_dot.size(0);
  p.heads = q_dot.size(1);
  p.g_heads = g_heads;
  p.length = q_dot.size(2);
  const at::Tensor sums =
      at::empty({p.batch * g_heads * GateGradSegments(p.length)}, q_dot.options());
  p.q_dot = q_dot.data_ptr<float>();
  p.k_dot = k_dot.data_ptr<float>();
  p.d_log_gamma = out.data_ptr<float>();
  p.segment_sums = sums.data_ptr<float>();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  const char* err = LaunchGateGrad(p);
  TORCH_CHECK(err == nullptr, "GateGradientCuda: ", err);
  return out;
}

at::Tensor GateGradientReference(const at::Tensor& q_dot, const at::Tensor& k_dot,
                                 int64_t g_heads) {
  return SumToKvHeads(q_dot - k_dot, g_heads).flip(-1).cumsum(-1).flip(-1);
}

}  // namespace linearize::kernels::detail
