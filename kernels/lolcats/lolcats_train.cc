// LoLCATs' training step on one forward kernel (FusedTrainCuda in
// lolcats_grad.h). The forward is the fused prefill kernel (the chunked
// wgmma kernel with the Hedgehog maps and the 64-token window inside),
// which also writes what the three backwards read: the features, the
// linear terms (bf16, y formed from them as rounded) and y's denominator.
// The backward: the window's prologue (the rows' dN, dZ, dc), the chunked
// linear's kernels (d_q, d_k / d_v: the maps' logits' gradients dl), then
// the window's query and key kernels, which fold each map's dl W^T into q's
// and k's gradients and the linear d_v into v's, and each map's kernel for
// dW alone. Under grouped-query heads (the window's d_k / d_v summed over
// query heads after its kernels) the window's kernels run first, and the
// linear part's d_v and the maps' dx add theirs in.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/feature_map/hedgehog_grad.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "kernels/lolcats/lolcats_args.h"
#include "kernels/lolcats/lolcats_grad.h"

namespace linearize::kernels::lolcats::internal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kFusedWindow = 64;  // the chunked kernel's chunk, and its key delay

struct FusedTrainFunction : public torch::autograd::Function<FusedTrainFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& q_weight,
                               const at::Tensor& k_weight, const at::Tensor& gate) {
    const at::Tensor qb = q.to(at::kBFloat16).contiguous(), kb = k.to(at::kBFloat16).contiguous(),
                     vb = v.to(at::kBFloat16).contiguous();
    const at::Tensor g = gate.to(at::kFloat).contiguous();
    detail::CudaLinearInputs in;
    in.phi_q = qb;
    in.phi_k = kb;
    in.v = vb;
    in.q_weight = q_weight;
    in.k_weight = k_weight;
    in.key_delay = kFusedWindow;
    in.window_gate = g;
    in.want_num_den = true;
    in.num_in_input_dtype = true;  // bf16, as the composed path's
    in.want_y_den = true;
    in.want_features = true;
    in.keep_block_states = true;
    const std::optional<detail::CudaLinearOutputs> out = detail::ChunkedCausalLinearCuda(in);
    TORCH_CHECK(out.has_value(), "lolcats fused training forward: the kernel declined");
    // The window combine's saved tensors first (WindowCombineSaved::Of); the
    // maps' backward reads W^T [H, Fh, D] in bf16, as the kernel did.
    ctx->save_for_backward({qb, kb, vb, g, out->y, out->y_den, out->num, out->den, out->phi_q,
                            out->phi_k, out->q_weight_t, out->k_weight_t, out->block_states});
    ctx->saved_data["block_chunks"] = out->block_chunks;
    return {out->y};
  }

  // Gradients in bfloat16 or float32; autograd casts each to its input's dtype.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &qb = s[0], &kb = s[1], &vb = s[2], &phi_q = s[8], &phi_k = s[9];
    const at::Tensor &q_weight_t = s[10], &k_weight_t = s[11], &block_states = s[12];
    const int64_t block_chunks = ctx->saved_data["block_chunks"].toInt();
    // q, k, v reach the window as bf16 (the maps' and the linear part's
    // inputs too), so its gradients stay bf16 where no head sum follows.
    const WindowCombineSaved saved =
        WindowCombineSaved::Of(s, kFusedWindow, detail::WindowInputTypes{true, true});
    const WindowCombineRowGrads rows = WindowCombineRows(saved, grads[0]);
    // The linear part's backward gives the maps' logits' gradients (from its
    // unrounded d_phi), so the maps' backward reads neither phi nor d_phi.
    if (WindowFoldApplies(saved, q_weight_t.size(1))) {
      // The window kernels add the maps' dl W^T into q's and k's gradients
      // and the linear part's d_v into v's; the maps' kernel is left dW.
      const detail::LinearTermGrads lin = detail::ChunkedLinearTermsBackwardCuda(
          phi_q, phi_k, vb, rows.prologue.d_num, rows.prologue.d_den, at::Tensor(), block_states,
          block_chunks, kFusedWindow, /*hedgehog_logits=*/true);
      const WindowFold fold{lin.d_phi_q, q_weight_t, lin.d_phi_k, k_weight_t, lin.d_v};
      const WindowCombineGrads w = WindowCombineQkvGrads(saved, rows, &fold);
      const at::Tensor d_q_weight =
          detail::HedgehogWeightGradFromLogitsCuda(qb, q_weight_t, lin.d_phi_q);
      const at::Tensor d_k_weight =
          detail::HedgehogWeightGradFromLogitsCuda(kb, k_weight_t, lin.d_phi_k);
      return {w.dq, w.dk, w.dv, d_q_weight, d_k_weight, w.d_gate};
    }
    // Grouped-query heads: the window's d_k, d_v are summed into kv heads
    // first; the chunked kernels add its d_v, the maps' kernel its d_q, d_k.
    const WindowCombineGrads w = WindowCombineQkvGrads(saved, rows);
    const detail::LinearTermGrads lin = detail::ChunkedLinearTermsBackwardCuda(
        phi_q, phi_k, vb, w.d_num, w.d_den, w.dv, block_states, block_chunks, kFusedWindow,
        /*hedgehog_logits=*/true);
    const detail::HedgehogGrads mq =
        detail::HedgehogBackwardFromLogitsCuda(qb, q_weight_t, lin.d_phi_q, w.dq);
    const detail::HedgehogGrads mk =
        detail::HedgehogBackwardFromLogitsCuda(kb, k_weight_t, lin.d_phi_k, w.dk);
    return {mq.dx, mk.dx, lin.d_v, mq.d_weight, mk.d_weight, w.d_gate};
  }
};

}  // namespace

std::optional<at::Tensor> FusedTrainCuda(const char* op, const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const Weights& weights,
                                         const Options& options) {
  const FeatureMaps& maps = weights.maps;
  if (options.window_kind != WindowKind::kSliding || options.window != kFusedWindow ||
      maps.kind != FeatureMapKind::kHedgehog) {
    return std::nullopt;
  }
  const detail::QkvDims dims = detail::CheckQkv(op, q, k, v);
  CheckWeights(op, dims, q.device(), weights, options);
  // The fused kernel's sizes (F = 2 Fh = D = 128), a linear part, the key
  // map per kv head (phi_k is saved once a kv head), and the grid's limits
  // (so that the kernel does not decline inside the Function).
  if (dims.head_dim != 128 || dims.length <= kFusedWindow || maps.q_weight.size(2) != 64 ||
      maps.k_weight.size(0) != dims.kv_heads || dims.batch > 65535 || dims.q_heads > 65535 ||
      !detail::WgmmaKernelsApply(q.device())) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const at::Tensor gate = at::sigmoid(weights.window_logit.to(at::kFloat)).reshape({dims.q_heads});
  return FusedTrainFunction::apply(q, k, v, maps.q_weight, maps.k_weight, gate)[0];
}

}  // namespace linearize::kernels::lolcats::internal
