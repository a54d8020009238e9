#include "kernels/linear_attention/chunked_linear_dispatch.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/linear_attention/chunked_linear_params.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"

namespace linearize::kernels::detail {
namespace {

bool UseWgmma(const ChunkedLinearParams& p, const at::Device& device) {
  return WgmmaKernelsApply(device) && ChunkedLinearWgmmaSupported(p);
}

}  // namespace

// The wgmma kernels (sm90a/chunked_linear_wgmma.h) run wherever they cover
// the call on an sm_90 device. H100, bf16, against the mma.sync kernels:
// the output pass ungated 1.1-1.5x, gated with the maps fused (Lizard's
// prefill) 1.03-1.12x, gated on given features (Lizard's training forward)
// 0.98-1.10x, with pass 1 faster too. LINEARIZE_WGMMA=0 keeps mma.sync
// everywhere, so the tests and benchmarks can run either.
bool WgmmaKernelsApply(const at::Device& device) {
  static const bool allowed = [] {
    const char* env = std::getenv("LINEARIZE_WGMMA");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  if (!allowed) return false;
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index());
  return prop->major == 9 && prop->minor == 0;  // sm_90a code
}

std::optional<CudaLinearOutputs> ChunkedCausalLinearCuda(const CudaLinearInputs& in) {
  const at::Tensor &q = in.phi_q, &k = in.phi_k, &v = in.v, &g = in.log_gamma;
  if (!q.defined() || !k.defined() || !v.defined()) return std::nullopt;
  if (!CudaKernelApplies(q.device(), {&q, &k, &v, &g, &in.kv0, &in.k_sum0, &in.window_gate}) ||
      in.kv0.defined() != in.k_sum0.defined()) {
    return std::nullopt;
  }
  ElementType type;
  if (!KernelElementType(q.scalar_type(), &type) || k.scalar_type() != q.scalar_type() ||
      v.scalar_type() != q.scalar_type()) {
    return std::nullopt;
  }
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return std::nullopt;
  const bool fuse = in.q_weight.defined();
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = v.size(3);
  const int64_t f = !fuse ? q.size(3) : in.q_weight.dim() == 3 ? 2 * in.q_weight.size(2) : -1;
  if (k.size(0) != b || v.size(0) != b || k.size(2) != t || v.size(2) != t ||
      k.size(3) != q.size(3) || t < 1) {
    return std::nullopt;
  }
  if (fuse) {
    const at::Tensor &qw = in.q_weight, &kw = in.k_weight;
    if (type != ElementType::kBF16 || !kw.defined() || qw.dim() != 3 || kw.dim() != 3 ||
        q.size(3) != d || qw.size(0) != h || qw.size(1) != d || kw.size(1) != d ||
        kw.size(2) != qw.size(2) || qw.device() != q.device() || kw.device() != q.device()) {
      return std::nullopt;
    }
  }
  if (g.defined() && (g.dim() != 3 || g.size(0) != b || g.size(2) != t)) return std::nullopt;
  if (in.kv0.defined() && (in.kv0.sizes() != at::IntArrayRef{b, h, f, d} ||
                           in.k_sum0.sizes() != at::IntArrayRef{b, h, f})) {
    return std::nullopt;
  }

  ChunkedLinearParams p;
  p.batch = b;
  p.heads = h;
  p.k_heads = k.size(1);
  p.v_heads = v.size(1);
  p.g_heads = g.defined() ? g.size(1) : 0;
  p.length = t;
  p.feature_dim = f;
  p.head_dim = d;
  p.key_delay = in.key_delay;
  p.type = type;
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor qwt, kwt;  // [H, Fh, D] in the input dtype
  if (fuse) {
    qwt = in.q_weight.to(q.scalar_type()).transpose(1, 2).contiguous();
    kwt = in.k_weight.to(q.scalar_type()).transpose(1, 2).contiguous();
    p.q_weight_t = qwt.data_ptr();
    p.k_weight_t = kwt.data_ptr();
    p.k_weight_heads = kwt.size(0);
  }
  const at::Tensor gc = g.defined() ? g.to(at::kFloat).contiguous() : at::Tensor();
  p.log_gamma = gc.defined() ? gc.data_ptr<float>() : nullptr;
  at::Tensor window_gate;
  if (in.window_gate.defined()) {
    TORCH_CHECK(in.want_y, "ChunkedCausalLinearCuda: the fused window gives y");
    if (in.window_gate.numel() != h) return std::nullopt;
    window_gate = in.window_gate.to(at::kFloat).contiguous();
    p.window_gate = window_gate.data_ptr<float>();
    p.window_scale = static_cast<float>(1.0 / std::sqrt(double(d)));
  }
  if (!ChunkedLinearSupported(p)) return std::nullopt;

  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const at::TensorOptions f32 = q.options().dtype(at::kFloat);
  at::Tensor initial;  // the kernel's state layout: [kv0 | k_sum0 | zeros]
  if (in.kv0.defined()) {
    initial = at::zeros({b, h, f, ChunkedLinearInitialStateCols(d)}, f32);
    initial.narrow(3, 0, d).copy_(in.kv0);
    initial.select(3, d).copy_(in.k_sum0);
    p.initial_state = initial.data_ptr<float>();
  }
  CudaLinearOutputs out;
  out.q_weight_t = qwt;
  out.k_weight_t = kwt;
  if (in.want_y) out.y = at::empty({b, h, t, d}, q.options());
  if (in.want_num_den) {
    out.num = at::empty({b, h, t, d}, in.num_in_input_dtype ? q.options() : f32);
    out.den = at::empty({b, h, t}, f32);
  }
  if (in.want_state) {
    out.kv = at::empty({b, h, f, d}, f32);
    out.k_sum = at::empty({b, h, f}, f32);
  }
  const bool features = fuse && in.want_features;
  if (features) {
    out.phi_q = at::empty({b, h, t, f}, q.options());
    out.phi_k = at::empty({b, k.size(1), t, f}, q.options());
    p.phi_q_out = out.phi_q.data_ptr();
    p.phi_k_out = out.phi_k.data_ptr();
  }
  if (in.want_y_den && in.window_gate.defined()) {
    out.y_den = at::empty({b, h, t}, f32);
    p.y_den = out.y_den.data_ptr<float>();
  }
  p.phi_q = qc.data_ptr();
  p.phi_k = kc.data_ptr();
  p.v = vc.data_ptr();
  p.y = in.want_y ? out.y.data_ptr() : nullptr;
  p.num = in.want_num_den ? out.num.data_ptr() : nullptr;
  p.num_bf16 = in.want_num_den && out.num.scalar_type() == at::kBFloat16;
  p.den = in.want_num_den ? out.den.data_ptr<float>() : nullptr;
  p.kv = in.want_state ? out.kv.data_ptr<float>() : nullptr;
  p.k_sum = in.want_state ? out.k_sum.data_ptr<float>() : nullptr;
  p.eps = static_cast<float>(in.eps);
  p.sm_count = CurrentSmCount();
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  PlanChunkedLinear(p);
  at::Tensor workspace;
  const int64_t bytes = ChunkedLinearWorkspaceBytes(p);
  if (bytes > 0) {
    workspace = at::empty({bytes}, q.options().dtype(at::kByte));
    p.workspace = workspace.data_ptr();
  }
  const bool wgmma = UseWgmma(p, q.device());
  if (in.want_features != features || (!wgmma && (features || p.y_den != nullptr ||
                                                  (p.window_gate != nullptr && in.want_num_den)))) {
    return std::nullopt;  // training outputs only the wgmma kernel writes
  }
  const char* err = wgmma ? LaunchChunkedLinearWgmma(p) : LaunchChunkedLinear(p);
  TORCH_CHECK(err == nullptr, "ChunkedCausalLinearCuda: CUDA launch failed: ", err);
  CountCudaAttentionLaunch();
  if (features && in.key_delay > 0) {  // the keys no query reads
    const int64_t tail = std::min(t, in.key_delay);
    out.phi_k.narrow(2, t - tail, tail).zero_();
  }
  if (in.keep_block_states && p.blocks > 1) {
    out.block_states = workspace;
    out.block_chunks = p.block_chunks;
  }
  return out;
}

std::optional<LinearTerms> ChunkedCausalLinearTermsCuda(
    const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
    const at::Tensor& log_gamma, bool want_state, const at::Tensor& kv0, const at::Tensor& k_sum0) {
  CudaLinearInputs in;
  in.phi_q = phi_q;
  in.phi_k = phi_k;
  in.v = v;
  in.log_gamma = log_gamma;
  in.kv0 = kv0;
  in.k_sum0 = k_sum0;
  in.want_y = false;
  in.want_num_den = true;
  in.want_state = want_state;
  std::optional<CudaLinearOutputs> out = ChunkedCausalLinearCuda(in);
  if (!out) return std::nullopt;
  return LinearTerms{out->num, out->den, out->kv, out->k_sum};
}

}  // namespace linearize::kernels::detail
