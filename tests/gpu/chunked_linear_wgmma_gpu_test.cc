// The wgmma chunked kernel (kernels/linear_attention/sm90a/chunked_linear_wgmma.h)
// against detail::ChunkedCausalLinear in float64 on the same bf16 values:
// y = num / (den + eps), num and den themselves (with the window: the
// linear terms, and y's denominator) and the final state, from the empty
// state or a given one; the fused maps' features (LoLCATs' training outputs);
// T = 1, one chunk, partial chunks, batch > 1, GQA, sequences long enough
// for the two-pass split, and the Hedgehog maps fused (raw q, k and the
// maps' weights in, features computed inside). Fresh random inputs
// (positive features, as the maps give), the outputs poisoned first.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::RelativeError;
using testing::Seen;

struct Case {
  const char* name;
  int64_t b, h, hk, t;
  bool initial_state;
  bool fused_maps = false;
  bool k_map_per_query_head = false;  // else per kv head
  int64_t key_delay = 0;              // LoLCATs' linear part: keys older than the window
  bool window = false;                // LoLCATs' 64-token window fused (delay 64, fused maps)
  int gates = 0;           // log gates: 0 none, 1 mild, 2 strong (-25 and -inf too), 3 slow
  int64_t gate_heads = 0;  // Hg (query heads h read h / (H / Hg))
};

// Random log gates [B, Hg, T] (<= 0), rounded through float32 as the kernel
// reads them. Slow gates keep a block's total decay far from 0 (the
// two-pass fold's decays then matter).
at::Tensor LogGates(const Case& c) {
  if (c.gates == 1) return Seen(-at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 0.3, at::kFloat);
  if (c.gates == 3)
    return Seen(-at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 0.02, at::kFloat);
  at::Tensor lg = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 3;
  const at::Tensor pos = at::arange(c.t, at::kLong).view({1, 1, c.t}).expand_as(lg);
  lg = at::where(pos.remainder(13) == 5, at::full({}, -25.0, at::kDouble), lg);
  lg = at::where(pos.remainder(71) == 40,
                 at::full({}, -std::numeric_limits<double>::infinity(), at::kDouble), lg);
  return Seen(lg, at::kFloat);
}

// LoLCATs' window terms over raw q [B, H, T, D], k, v [B, H, T, D] (expanded
// to the query heads): keys j in (i - 64, i], s = q k / sqrt(D), c_i their
// max; num = g sum exp(s - c) v, den = g sum exp(s - c), g [H].
std::pair<at::Tensor, at::Tensor> WindowTerms(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& g) {
  const int64_t t = q.size(2);
  const at::Tensor i = at::arange(t, q.options()).unsqueeze(1), j = at::arange(t, q.options());
  const at::Tensor in_window = (j <= i) & (j > i - 64);
  const at::Tensor s =
      at::where(in_window, at::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(q.size(3))),
                -std::numeric_limits<double>::infinity());
  const at::Tensor w =
      at::exp(s - std::get<0>(s.max(-1, /*keepdim=*/true))) * g.view({1, -1, 1, 1});
  return {at::matmul(w, v), w.sum(-1)};
}

// Hedgehog's phi(x) = [softmax(x W), softmax(-x W)] per head: x [B, Hx, T, D],
// w [Hw, D, Fh] with Hw = Hx, or Hw = a multiple of Hx (x's head h / (Hw / Hx)).
at::Tensor Hedgehog(const at::Tensor& x, const at::Tensor& w) {
  const at::Tensor xs = x.repeat_interleave(w.size(0) / x.size(1), 1);
  const at::Tensor l = at::matmul(xs, w.unsqueeze(0));
  return at::cat({at::softmax(l, -1), at::softmax(-l, -1)}, -1);
}

class ChunkedLinearWgmmaGpu : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkedLinearWgmmaGpu, MatchesFloat64Reference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(91 + c.t + c.b + c.hk);
  // Features, or with fused maps raw q / k (features by Hedgehog on the CPU).
  const at::Tensor q =
      c.fused_maps ? Seen(at::randn({c.b, c.h, c.t, 128}, at::kDouble), at::kBFloat16)
                   : Seen(at::rand({c.b, c.h, c.t, 128}, at::kDouble) + 0.05, at::kBFloat16);
  const at::Tensor k =
      c.fused_maps ? Seen(at::randn({c.b, c.hk, c.t, 128}, at::kDouble), at::kBFloat16)
                   : Seen(at::rand({c.b, c.hk, c.t, 128}, at::kDouble) + 0.05, at::kBFloat16);
  const at::Tensor v = Seen(at::randn({c.b, c.hk, c.t, 128}, at::kDouble), at::kBFloat16);
  const int64_t hw = c.k_map_per_query_head ? c.h : c.hk;
  const at::Tensor wq =
      Seen(at::randn({c.h, 128, 64}, at::kDouble) / std::sqrt(128.0), at::kBFloat16);
  const at::Tensor wk =
      Seen(at::randn({hw, 128, 64}, at::kDouble) / std::sqrt(128.0), at::kBFloat16);
  const double eps = 1e-6;
  const int64_t group = c.h / c.hk;
  at::Tensor kv0, k_sum0;  // as earlier keys would leave them: positive k_sum0
  if (c.initial_state) {
    kv0 = at::randn({c.b, c.h, 128, 128}, at::kDouble) * 4;
    k_sum0 = at::rand({c.b, c.h, 128}, at::kDouble) * 20 + 1;
  }
  const at::Tensor phi_q = c.fused_maps ? Hedgehog(q, wq) : q;
  const at::Tensor phi_k =
      c.fused_maps ? Hedgehog(k, wk).repeat_interleave(c.h / hw, 1) : k.repeat_interleave(group, 1);
  const auto delayed = [&](const at::Tensor& x) {  // position t sees t - key_delay
    return at::constant_pad_nd(x, {0, 0, c.key_delay, 0}).narrow(2, 0, c.t);
  };
  const at::Tensor lg = c.gates > 0 ? LogGates(c) : at::Tensor();
  const at::Tensor lg_heads = lg.defined() ? lg.repeat_interleave(c.h / c.gate_heads, 1) : lg;
  const detail::LinearTerms lt = detail::ChunkedCausalLinear(
      phi_q, delayed(phi_k), delayed(v.repeat_interleave(group, 1)), lg_heads, 64, kv0, k_sum0);
  at::Tensor ref = lt.num / (lt.den.unsqueeze(-1) + eps);
  const at::Tensor gate = at::sigmoid(at::randn({c.h}, at::kDouble));
  at::Tensor ref_y_den;
  if (c.window) {  // one normaliser for both parts, no eps
    const auto [wn, wd] =
        WindowTerms(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), gate);
    ref_y_den = lt.den + wd;
    ref = (lt.num + wn) / ref_y_den.unsqueeze(-1);
  }

  const at::Tensor gq = q.to(at::kBFloat16).cuda(), gk = k.to(at::kBFloat16).cuda(),
                   gv = v.to(at::kBFloat16).cuda();
  const at::Tensor y = at::full({c.b, c.h, c.t, 128}, std::numeric_limits<float>::quiet_NaN(),
                                at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  ChunkedLinearParams p;
  p.phi_q = gq.data_ptr();
  p.phi_k = gk.data_ptr();
  p.v = gv.data_ptr();
  p.batch = c.b;
  p.heads = c.h;
  p.k_heads = p.v_heads = c.hk;
  p.length = c.t;
  p.key_delay = c.key_delay;
  p.feature_dim = p.head_dim = 128;
  p.y = y.data_ptr();
  const at::Tensor ggate = gate.to(at::kFloat).cuda();
  const at::Tensor glg = lg.defined() ? lg.to(at::kFloat).cuda() : at::Tensor();
  if (lg.defined()) {
    p.log_gamma = glg.data_ptr<float>();
    p.g_heads = c.gate_heads;
  }
  if (c.window) {
    p.window_gate = ggate.data_ptr<float>();
    p.window_scale = static_cast<float>(1.0 / std::sqrt(128.0));
  }
  at::Tensor gwq, gwk;  // the maps transposed, [Hw, Fh, D]
  if (c.fused_maps) {
    gwq = wq.transpose(1, 2).contiguous().to(at::kBFloat16).cuda();
    gwk = wk.transpose(1, 2).contiguous().to(at::kBFloat16).cuda();
    p.q_weight_t = gwq.data_ptr();
    p.k_weight_t = gwk.data_ptr();
    p.k_weight_heads = hw;
  }
  const at::TensorOptions f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const at::Tensor kv = at::full({c.b, c.h, 128, 128}, NAN, f32);
  const at::Tensor k_sum = at::full({c.b, c.h, 128}, NAN, f32);
  p.kv = kv.data_ptr<float>();
  p.k_sum = k_sum.data_ptr<float>();
  at::Tensor initial;  // [kv0 | k_sum0 | zeros] rows
  if (c.initial_state) {
    initial = at::zeros({c.b, c.h, 128, ChunkedLinearInitialStateCols(128)}, f32);
    initial.narrow(3, 0, 128).copy_(kv0);
    initial.select(3, 128).copy_(k_sum0);
    p.initial_state = initial.data_ptr<float>();
  }
  // The training forms' raw terms too: num in bf16 for even T, float32 for
  // odd. With the window only for even T (LoLCATs' training forward: bf16
  // linear terms before the window adds in, y's denominator, the features);
  // odd T keeps the prefill's y alone. Ungated fused maps with the key map
  // per key head: the features.
  const bool num_bf16 = c.t % 2 == 0;
  const bool training = !c.window || num_bf16;
  at::Tensor num, den, y_den, phi_q_out, phi_k_out;
  if (training) {
    num = at::full({c.b, c.h, c.t, 128}, NAN, f32.dtype(num_bf16 ? at::kBFloat16 : at::kFloat));
    den = at::full({c.b, c.h, c.t}, NAN, f32);
    p.num = num.data_ptr();
    p.num_bf16 = num_bf16;
    p.den = den.data_ptr<float>();
  }
  if (c.window && training) {
    y_den = at::full({c.b, c.h, c.t}, NAN, f32);
    p.y_den = y_den.data_ptr<float>();
  }
  if (training && c.fused_maps && c.gates == 0 && hw == c.hk) {
    phi_q_out = at::full({c.b, c.h, c.t, 128}, NAN, f32.dtype(at::kBFloat16));
    phi_k_out = at::full({c.b, c.hk, c.t, 128}, NAN, f32.dtype(at::kBFloat16));
    p.phi_q_out = phi_q_out.data_ptr();
    p.phi_k_out = phi_k_out.data_ptr();
  }
  p.eps = static_cast<float>(eps);
  p.type = ElementType::kBF16;
  p.stream = at::cuda::getCurrentCUDAStream().stream();
  ASSERT_TRUE(ChunkedLinearWgmmaSupported(p));
  // The device's plan (long sequences: many blocks of a chunk or two), and
  // plans for 4 and 1 SMs: a few blocks, or one, of many chunks each, so
  // that the tile, state and z buffers are reused and the blocks' entry
  // states carry several chunks.
  const int device_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  for (const int sms : {device_sms, 4, 1}) {
    p.sm_count = sms;
    PlanChunkedLinear(p);
    at::Tensor workspace;
    p.workspace = nullptr;
    if (const int64_t bytes = ChunkedLinearWorkspaceBytes(p); bytes > 0) {
      workspace = at::empty({bytes}, f32.dtype(at::kByte));
      p.workspace = workspace.data_ptr();
    }
    y.fill_(NAN);
    kv.fill_(NAN);
    k_sum.fill_(NAN);
    for (const at::Tensor& out : {num, den, y_den, phi_q_out, phi_k_out}) {
      if (out.defined()) out.fill_(NAN);
    }
    const char* err = LaunchChunkedLinearWgmma(p);
    ASSERT_EQ(err, nullptr) << err;
    const std::string plan = " (planned for " + std::to_string(sms) +
                             " SMs: " + std::to_string(p.blocks) + " blocks of " +
                             std::to_string(p.block_chunks) + " chunks)";
    // Each output written (finite after the NaN poison) and within bf16's
    // tolerance of the float64 reference.
    const auto expect_close = [&](const char* name, const at::Tensor& out,
                                  const at::Tensor& want) {
      const at::Tensor got = out.cpu().to(at::kDouble);
      ASSERT_TRUE(testing::AllFinite(got)) << name << " unwritten or non-finite" << plan;
      EXPECT_LT(RelativeError(got, want), testing::Tol(at::kBFloat16)) << name << plan;
    };
    expect_close("y", y, ref);
    if (num.defined()) {
      expect_close("num", num, lt.num);
      expect_close("den", den, lt.den);
    }
    if (y_den.defined()) expect_close("y_den", y_den, ref_y_den);
    if (phi_q_out.defined()) expect_close("phi_q", phi_q_out, phi_q);
    if (phi_k_out.defined() && c.t > c.key_delay) {  // the rows some query reads
      const int64_t read = c.t - c.key_delay;
      expect_close("phi_k", phi_k_out.narrow(2, 0, read), Hedgehog(k, wk).narrow(2, 0, read));
    }
    expect_close("kv", kv, lt.kv);
    expect_close("k_sum", k_sum, lt.k_sum);
  }
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 1, false},
    {"T64", 1, 2, 2, 64, false},
    {"T100_B2_gqa", 2, 4, 2, 100, false},
    {"T1000", 1, 4, 4, 1000, false},
    {"T333_B2_gqa4", 2, 4, 1, 333, false},
    // Few (b, h) and many chunks: the two-pass split (pass 1 on wgmma too).
    {"T3000_two_pass", 1, 2, 2, 3000, false},
    {"T2050_two_pass_gqa_initial_state", 1, 4, 2, 2050, true},
    {"T70_initial_state", 2, 2, 2, 70, true},
    // The Hedgehog maps fused.
    {"maps_T1", 1, 2, 2, 1, false, true},
    {"maps_T100_B2_gqa", 2, 4, 2, 100, false, true},
    {"maps_T333_gqa4_k_map_per_query_head", 2, 4, 1, 333, false, true, true},
    {"maps_T3000_two_pass_initial_state", 1, 2, 2, 3000, true, true},
    // Keys and values delayed (LoLCATs' linear part), by the window (64) or less.
    {"delay64_T300_B2_gqa", 2, 4, 2, 300, false, false, false, 64},
    {"maps_delay64_T3000_two_pass", 1, 2, 2, 3000, false, true, false, 64},
    {"maps_delay16_T100_initial_state", 1, 2, 2, 100, true, true, false, 16},
    {"maps_delay64_T50_all_delayed_out", 1, 2, 2, 50, false, true, false, 64},
    // LoLCATs' window fused (delay 64, fused maps): the hybrid's output.
    {"window_T100_B2_gqa", 2, 4, 2, 100, false, true, false, 64, true},
    {"window_T3000_two_pass", 1, 2, 2, 3000, false, true, false, 64, true},
    {"window_T333_gqa4_k_map_per_query_head", 2, 4, 1, 333, false, true, true, 64, true},
    {"window_T50_initial_state", 1, 2, 2, 50, true, true, false, 64, true},
    {"window_T129", 1, 2, 2, 129, false, true, false, 64, true},
    {"window_T1", 1, 2, 2, 1, false, true, false, 64, true},
    {"window_T128_B2", 2, 2, 2, 128, false, true, false, 64, true},
    // Gated (Lizard's branch and the gated baseline).
    {"gated_mild_T129_B2_gqa", 2, 4, 2, 129, false, false, false, 0, false, 1, 4},
    {"gated_strong_T300_kv_gates", 2, 4, 2, 300, false, false, false, 0, false, 2, 2},
    {"gated_mild_T3000_two_pass_initial_state", 1, 2, 2, 3000, true, false, false, 0, false, 1, 2},
    {"maps_gated_mild_T200_gqa", 2, 4, 2, 200, false, true, false, 0, false, 1, 2},
    {"maps_gated_strong_T4001_two_pass", 1, 2, 2, 4001, false, true, false, 0, false, 2, 2},
    // Slow gates: the blocks' total decays (and their slots) matter.
    {"gated_slow_T3000_B2_gate_heads_two_pass_initial_state", 2, 4, 2, 3000, true, false, false, 0,
     false, 3, 2},
    {"maps_gated_slow_T2500_two_pass", 1, 4, 4, 2500, false, true, false, 0, false, 3, 1},
};

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkedLinearWgmmaGpu, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace linearize::kernels
