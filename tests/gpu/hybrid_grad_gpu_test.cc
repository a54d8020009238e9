// Training (forward + backward) of the LoLCATs and Lizard hybrids through
// their entry points on the GPU under bf16 autocast, as the converter trains
// them: the chunked linear part and both hybrids' window terms on the CUDA
// kernels (LoLCATs' forward as one kernel where it covers the call,
// lolcats_train.cc). Gradients for q, k, v, the feature maps and the window/gate
// parameters against LibTorch autograd of the same entry point in float64 on
// the CPU, on fresh random inputs; the CUDA allocator is poisoned first.
// Also LoLCATs' folded window backward kernels against the unfolded ones,
// and the window backward's prologue against float64 on misaligned views.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/lizard/lizard_attention.h"
#include "kernels/lizard/lizard_grad.h"
#include "kernels/lolcats/lolcats_attention.h"
#include "kernels/lolcats/lolcats_window_bwd_params.h"
#include "kernels/lolcats/window_bwd_prologue.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::RelativeError;

struct Case {
  const char* name;
  int64_t b, hq, hkv, t, d, fh, window;
};

// Leaves on `device` in `type` from float64 CPU tensors (rounded through bf16
// first, so both sides start from the same values).
std::vector<at::Tensor> Leaves(const std::vector<at::Tensor>& xs, at::Device device,
                               at::ScalarType type) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& x : xs) {
    out.push_back(testing::Seen(x, at::kBFloat16).to(type).to(device).requires_grad_(true));
  }
  return out;
}

using Forward = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// GPU leaves (bf16 activations, float32 parameters from `params_from` on),
// run through `forward` under bf16 autocast and back-propagated with `w`.
std::vector<at::Tensor> GpuGradients(const std::vector<at::Tensor>& inputs, size_t params_from,
                                     const Forward& forward, const at::Tensor& w,
                                     at::Tensor* y_out) {
  std::vector<at::Tensor> gpu;
  for (size_t i = 0; i < inputs.size(); ++i) {
    gpu.push_back(Leaves({inputs[i]}, at::kCUDA, i < params_from ? at::kBFloat16 : at::kFloat)[0]);
  }
  const testing::CudaBf16Autocast autocast;
  const at::Tensor y = forward(gpu);
  (y.to(at::kFloat) * w.to(at::kFloat).cuda()).sum().backward();
  if (y_out != nullptr) *y_out = y;
  return gpu;
}

// Runs `forward` on leaves made from `inputs` on the GPU (bf16 activations,
// float32 parameters, autocast) and on the CPU (float64), back-propagates the
// same random output weights, and compares every gradient. `params_from`:
// index of the first parameter (float32 on the GPU). Each gradient's error
// must stay under bf16's tolerance (the bound). Beside it, a failure
// names the error of `native` (the same attention in plain LibTorch ops, on
// the GPU under the same autocast): what bf16 alone costs on this draw. With
// LINEARIZE_PRINT_ERRORS set it prints both errors and the worst element.
// attention_launches >= 0: exactly that many attention (not map) kernels
// ran, which tells the paths apart.
void ExpectSameGradients(const std::vector<at::Tensor>& inputs, size_t params_from,
                         const Forward& forward, const Forward& native,
                         const std::vector<std::string>& names, int min_launches,
                         int attention_launches = -1) {
  std::vector<at::Tensor> cpu = Leaves(inputs, at::kCPU, at::kDouble);
  const at::Tensor y_ref = forward(cpu);
  const at::Tensor w = at::randn(y_ref.sizes(), at::kDouble);
  (y_ref * w).sum().backward();

  const bool print = std::getenv("LINEARIZE_PRINT_ERRORS") != nullptr;
  const std::vector<at::Tensor> bf16_native = GpuGradients(inputs, params_from, native, w, nullptr);
  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  at::Tensor y;
  const std::vector<at::Tensor> gpu = GpuGradients(inputs, params_from, forward, w, &y);
  EXPECT_LT(RelativeError(y, y_ref), testing::Tol(at::kBFloat16)) << "y";
  EXPECT_GE(launches.Launches(), min_launches) << "the CUDA kernels ran forward and backward";
  if (attention_launches >= 0) {
    EXPECT_EQ(launches.AttentionLaunches(), attention_launches);
  }
  // The call's gradient scale: the largest reference gradient.
  double scale = 0;
  for (const at::Tensor& x : cpu) {
    if (x.grad().defined() && x.numel() > 0) {
      scale = std::max(scale, x.grad().abs().max().item<double>());
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].numel() == 0) continue;  // (no sinks)
    if (!cpu[i].grad().defined()) {  // unused (the maps while no key has left the window)
      EXPECT_TRUE(!gpu[i].grad().defined() || gpu[i].grad().abs().max().item<double>() == 0)
          << names[i];
      continue;
    }
    ASSERT_TRUE(gpu[i].grad().defined()) << names[i];
    ASSERT_TRUE(testing::AllFinite(gpu[i].grad())) << names[i];
    if (cpu[i].grad().abs().max().item<double>() < 1e-3 * scale) {
      // (Nearly) zero in exact arithmetic: at T = 1, dq and dk of a window
      // over one key, or of the gated ratio phi_q phi_k v / (phi_q phi_k +
      // eps); LoLCATs' window gate while no key has left the window. The
      // kernels' bf16 rounding (the backward reads y in bf16, as
      // FlashAttention does) leaves noise at bf16's relative level of the
      // call's gradients, which a relative error against ~0 cannot judge.
      EXPECT_LT(gpu[i].grad().abs().max().item<double>(), testing::Tol(at::kBFloat16) * scale)
          << "d " << names[i] << " (gradient scale " << scale << ")";
      continue;
    }
    // (0 where the plain ops leave this input out of the graph)
    const double native_error =
        bf16_native[i].grad().defined() ? RelativeError(bf16_native[i].grad(), cpu[i].grad()) : 0.0;
    if (print) {
      // The error is one element's (RelativeError takes the largest
      // deviation): where it is, and what the three give there.
      const at::Tensor ref = cpu[i].grad().reshape({-1});
      const at::Tensor ours = gpu[i].grad().to(at::kDouble).cpu().reshape({-1});
      const at::Tensor theirs =
          native_error > 0 ? bf16_native[i].grad().to(at::kDouble).cpu().reshape({-1}) : ref;
      const int64_t at = (ours - ref).abs().argmax().item<int64_t>();
      std::printf(
          "d %s: %.6g (LibTorch ops in bf16: %.6g); worst element %lld of %s: %.6g, float64 "
          "%.6g, LibTorch bf16 %.6g, largest |float64| %.6g\n",
          names[i].c_str(), RelativeError(gpu[i].grad(), cpu[i].grad()), native_error,
          static_cast<long long>(at), c10::str(cpu[i].grad().sizes()).c_str(),
          ours[at].item<double>(), ref[at].item<double>(), theirs[at].item<double>(),
          ref.abs().max().item<double>());
    }
    EXPECT_LT(RelativeError(gpu[i].grad(), cpu[i].grad()), testing::Tol(at::kBFloat16))
        << "d " << names[i] << " (LibTorch ops in bf16: " << native_error << ")";
  }
}

class LolcatsGradGpu : public ::testing::TestWithParam<Case> {};

TEST_P(LolcatsGradGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(21 + c.t + c.d);
  const kernels::FeatureMaps m = testing::RandomHedgehog(c.hq, c.hkv, c.d, c.fh);
  const std::vector<at::Tensor> inputs = {at::randn({c.b, c.hq, c.t, c.d}, at::kDouble),
                                          at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble),
                                          at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble),
                                          m.q_weight,
                                          m.k_weight,
                                          at::randn({c.hq}, at::kDouble)};
  lolcats::Options o;
  o.window = c.window;
  const auto run = [&](const std::vector<at::Tensor>& x, bool plain) {
    lolcats::Weights w;
    w.maps.kind = FeatureMapKind::kHedgehog;
    w.maps.q_weight = x[3];
    w.maps.k_weight = x[4];
    w.window_logit = x[5];
    return plain ? lolcats::ForwardReference(x[0], x[1], x[2], w, o)
                 : lolcats::ForwardParallel(x[0], x[1], x[2], w, o);
  };
  const auto forward = [&](const std::vector<at::Tensor>& x) { return run(x, false); };
  const auto native = [&](const std::vector<at::Tensor>& x) { return run(x, true); };
  // Window forward and backward, plus the chunked ones once keys leave the
  // window; or, where the fused training forward covers the call (FusedTrainCuda
  // in kernels/lolcats/lolcats_grad.h), that one forward kernel, the window's
  // and the chunked backward, and the two maps' backward.
  const bool fused = c.d == 128 && c.fh == 64 && c.window == 64 && c.t > 64 &&
                     detail::WgmmaKernelsApply(at::Device(at::kCUDA, 0));
  const int launches = fused ? 5 : c.t > c.window ? 4 : 2;
  ExpectSameGradients(inputs, 3, forward, native, {"q", "k", "v", "q_map", "k_map", "window_logit"},
                      launches, fused ? 3 : -1);
}

const Case kLolcatsCases[] = {
    {"T1", 1, 2, 2, 1, 64, 32, 64},
    {"T40_shorter_than_window", 1, 2, 1, 40, 64, 32, 64},
    {"T300_gqa_W64", 2, 4, 2, 300, 64, 32, 64},
    {"T777_D128_W16", 1, 4, 4, 777, 128, 64, 16},
    {"T3000_two_pass", 1, 2, 2, 3000, 128, 64, 64},  // (fused: D 128, Fh 64, W 64)
    {"T64_D128_window_only", 1, 2, 2, 64, 128, 64, 64},
    {"T130_B2_fused_partial_chunk", 2, 2, 2, 130, 128, 64, 64},
    {"T333_gqa_D128_W64", 2, 4, 2, 333, 128, 64, 64},
    {"T333_B2_D128_W64", 2, 4, 4, 333, 128, 64, 64},
    {"T2100_gqa4_D128_W64_two_pass", 1, 4, 1, 2100, 128, 64, 64},
};

INSTANTIATE_TEST_SUITE_P(Shapes, LolcatsGradGpu, ::testing::ValuesIn(kLolcatsCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// How a Lizard call differs from the default (its own window q / k, gates
// per kv head, every input trained).
struct LizardVariant {
  bool window_qk = true;          // false: the window branch reuses q and k
  bool query_head_gates = false;  // log_gamma [B, Hq, T] instead of [B, Hkv, T]
  bool weights_only = false;      // q, k, v, gates without gradients (LoRA-frozen inputs)
  int64_t sinks = 4;              // M, the meta-memory logits a head (0 allowed)
  double sink_spread = 1;         // their standard deviation
  double sink_offset = 0;         // added to them (-inf: sinks that weigh nothing)
};

// Lizard's gradients on the GPU against float64 autograd for one shape and
// variant; at D 128 also that the maps-inside training op (lizard_grad.h's
// TrainCuda) took the call.
void ExpectLizardGradients(const Case& c, const LizardVariant& v) {
  at::manual_seed(31 + c.t + c.d);
  const kernels::FeatureMaps m = testing::RandomHedgehog(c.hq, c.hkv, c.d, c.fh);
  const auto qkv = [&](int64_t h) { return at::randn({c.b, h, c.t, c.d}, at::kDouble); };
  const int64_t gate_heads = v.query_head_gates ? c.hq : c.hkv;
  const std::vector<at::Tensor> inputs = {
      qkv(c.hq), qkv(c.hkv), qkv(c.hkv), qkv(c.hq), qkv(c.hkv),
      // gates, mild: log sigmoid(x + 3) (kept as an activation, bf16 -> float)
      at::log_sigmoid(at::randn({c.b, gate_heads, c.t}, at::kDouble) + 3), m.q_weight, m.k_weight,
      at::randn({c.hq, v.sinks}, at::kDouble) * v.sink_spread + v.sink_offset,
      at::rand({c.hq}, at::kDouble) + 0.5};
  lizard::Options o;
  o.window = c.window;
  // The call's inputs and weights from leaves x (activations detached where
  // only the weights train, so their leaves get no gradient).
  const auto call = [&](const std::vector<at::Tensor>& x, lizard::Inputs* in, lizard::Weights* w) {
    const auto act = [&](int i) { return v.weights_only ? x[i].detach() : x[i]; };
    *in = {};
    in->q = act(0);
    in->k = act(1);
    in->v = act(2);
    in->log_gamma = x[5].is_cuda() ? act(5).to(at::kFloat) : act(5);
    if (v.window_qk) {
      in->q_window = act(3);
      in->k_window = act(4);
    }
    w->maps.kind = FeatureMapKind::kHedgehog;
    w->maps.q_weight = x[6];
    w->maps.k_weight = x[7];
    w->meta_logits = x[8];
    w->alpha = x[9];
  };
  const auto run = [&](const std::vector<at::Tensor>& x, bool plain) {
    lizard::Inputs in;
    lizard::Weights w;
    call(x, &in, &w);
    return plain ? lizard::ForwardReference(in, w, o) : lizard::ForwardParallel(in, w, o);
  };
  const auto forward = [&](const std::vector<at::Tensor>& x) { return run(x, false); };
  const auto native = [&](const std::vector<at::Tensor>& x) { return run(x, true); };
  // The gated branch's chunked kernel and the window kernel, forward and backward.
  ExpectSameGradients(inputs, 6, forward, native,
                      {"q", "k", "v", "q_window", "k_window", "log_gamma", "q_map", "k_map",
                       "meta_logits", "alpha"},
                      4);
  if (c.d == 128) {
    // At D 128 (F = 2 Fh = 128) ForwardParallel trained the gated branch
    // with the maps inside its kernels' op (lizard_grad.h), whose d_q / d_k
    // kernels form the maps' logits' gradients: with sinks in TrainCuda
    // beside the window kernels, without (the window kernels want one or
    // more) beside the LibTorch window. Both that op and the maps apart
    // launch as many kernels, so the gradients above are the op's only if
    // it applies here.
    lizard::Inputs in;
    lizard::Weights w;
    call(Leaves(inputs, at::kCUDA, at::kBFloat16), &in, &w);
    EXPECT_EQ(lizard::internal::TrainCuda("LizardGradGpu", in, w, o).has_value(), v.sinks > 0)
        << "the training op beside the window kernels";
    EXPECT_TRUE(lizard::internal::GatedTrainCuda(in, w, o, false).has_value())
        << "the maps-inside gated op declined";
  }
}

class LizardGradGpu : public ::testing::TestWithParam<Case> {};

TEST_P(LizardGradGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  ExpectLizardGradients(GetParam(), {});
}

const Case kLizardCases[] = {
    {"T1_W128", 1, 2, 1, 1, 64, 32, 128},
    {"T90_gqa_W32", 2, 4, 2, 90, 64, 32, 32},
    {"T300_gqa4_W100", 1, 4, 1, 300, 64, 32, 100},
    {"T1100_D128_W128", 1, 2, 2, 1100, 128, 64, 128},
    {"T260_D128_W72_odd_first_tile", 1, 2, 2, 260, 128, 64, 72},
    // The gated kernels' logits' gradients under grouped-query heads (the
    // keys' summed over each group) and over the two-pass split.
    {"T333_gqa_D128_W64", 2, 4, 2, 333, 128, 64, 64},
    {"T3000_D128_W64_two_pass", 1, 2, 2, 3000, 128, 64, 64},
};

INSTANTIATE_TEST_SUITE_P(Shapes, LizardGradGpu, ::testing::ValuesIn(kLizardCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// The same comparison where the call leaves the defaults: the window branch
// on q and k, gates per query head under GQA, only the weights trained; at
// D 128 (the maps-inside op) and D 64 (maps apart).
struct LizardVariantCase {
  const char* name;
  Case shape;
  LizardVariant variant;
};

class LizardGradVariantsGpu : public ::testing::TestWithParam<LizardVariantCase> {};

TEST_P(LizardGradVariantsGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  ExpectLizardGradients(GetParam().shape, GetParam().variant);
}

constexpr Case kLizardD128{"", 2, 4, 2, 333, 128, 64, 64};
constexpr Case kLizardD64{"", 1, 4, 1, 300, 64, 32, 100};
const LizardVariantCase kLizardVariants[] = {
    {"D128_window_on_q_k", kLizardD128, {.window_qk = false}},
    {"D128_query_head_gates", kLizardD128, {.query_head_gates = true}},
    {"D128_weights_only", kLizardD128, {.weights_only = true}},
    {"D64_window_on_q_k", kLizardD64, {.window_qk = false}},
    {"D64_query_head_gates", kLizardD64, {.query_head_gates = true}},
    {"D64_weights_only", kLizardD64, {.weights_only = true}},
    // The sinks' gradient exp(l_m - L) sum_i dZ_i exp(L - c_i) where the
    // sinks lie far apart (and often above the scores), and with none.
    {"D128_far_apart_sinks", kLizardD128, {.sink_spread = 4}},
    {"D128_no_sinks", kLizardD128, {.sinks = 0}},
    // Every sink at -inf: their gradient is 0 (exp(l_m - L) with L = -inf
    // must not make it NaN).
    {"D128_sinks_at_minus_inf",
     kLizardD128,
     {.sink_offset = -std::numeric_limits<double>::infinity()}},
    {"D64_no_sinks", kLizardD64, {.sinks = 0}},
};

INSTANTIATE_TEST_SUITE_P(Variants, LizardGradVariantsGpu, ::testing::ValuesIn(kLizardVariants),
                         [](const ::testing::TestParamInfo<LizardVariantCase>& info) {
                           return std::string(info.param.name);
                         });

// The folded window backward (LoLCATs' fused step: each map's dl W^T and the
// linear part's d_v added inside the window kernels) against the unfolded
// kernels plus those terms formed by LibTorch, on the same random inputs.
TEST(WindowFoldGpu, FoldedKernelsMatchTheUnfoldedPlusTheMapsTerms) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(29);
  const int64_t b = 2, h = 2, t = 1000, d = 128, fh = kWindowFoldHalfFeatures;
  const at::TensorOptions bf = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  const at::TensorOptions f32 = bf.dtype(at::kFloat);
  const at::Tensor q = at::randn({b, h, t, d}, bf), k = at::randn({b, h, t, d}, bf),
                   v = at::randn({b, h, t, d}, bf), dn = at::randn({b, h, t, d}, bf);
  const at::Tensor dz = at::randn({b, h, t}, f32), dc = at::randn({b, h, t}, f32),
                   gate = at::rand({h}, f32) + 0.5;
  const at::Tensor dl_q = at::randn({b, h, t, fh}, bf), dl_k = at::randn({b, h, t, fh}, bf),
                   wq_t = at::randn({h, fh, d}, bf) / 8, wk_t = at::randn({h, fh, d}, bf) / 8,
                   dv_add = at::randn({b, h, t, d}, bf);
  testing::PoisonCudaAllocator();
  // d_q, d_k, d_v in float32, folded or not.
  const auto run = [&](bool fold) {
    LolcatsWindowBwdParams p;
    p.q = q.data_ptr();
    p.k = k.data_ptr();
    p.v = v.data_ptr();
    p.d_num = dn.data_ptr();
    p.d_den = dz.data_ptr<float>();
    p.dc = dc.data_ptr<float>();
    p.gate = gate.data_ptr<float>();
    p.batch = b;
    p.heads = p.kv_heads = h;
    p.length = t;
    p.head_dim = d;
    p.window = 64;
    p.scale = static_cast<float>(1.0 / std::sqrt(double(d)));
    std::vector<at::Tensor> out;
    for (int i = 0; i < 3; ++i) out.push_back(at::empty({b, h, t, d}, f32));
    p.d_q = out[0].data_ptr();
    p.d_k = out[1].data_ptr();
    p.d_v = out[2].data_ptr();
    const at::Tensor row_max = at::empty({b, h, t}, f32);
    const at::Tensor argmax = at::empty({b, h, t}, f32.dtype(at::kInt));
    p.row_max = row_max.data_ptr<float>();
    p.argmax = argmax.data_ptr<int>();
    if (fold) {
      p.q_map = {dl_q.data_ptr(), wq_t.data_ptr()};
      p.k_map = {dl_k.data_ptr(), wk_t.data_ptr()};
      p.d_v_add = dv_add.data_ptr();
    }
    p.stream = at::cuda::getCurrentCUDAStream().stream();
    const char* err = LaunchLolcatsWindowBwd(p);
    EXPECT_EQ(err, nullptr) << err;
    return out;
  };
  const std::vector<at::Tensor> plain = run(false);
  const at::Tensor want[] = {plain[0] + at::matmul(dl_q.to(at::kFloat), wq_t.to(at::kFloat)),
                             plain[1] + at::matmul(dl_k.to(at::kFloat), wk_t.to(at::kFloat)),
                             plain[2] + dv_add.to(at::kFloat)};
  const char* names[] = {"d q", "d k", "d v"};
  const std::vector<at::Tensor> got = run(true);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(testing::AllFinite(got[i])) << names[i] << ": unwritten (NaN-poisoned)";
    EXPECT_LT(RelativeError(got[i], want[i]), 1e-5) << names[i];
  }
  // The fold refuses what it does not cover, naming it.
  LolcatsWindowBwdParams gqa;
  gqa.batch = b;
  gqa.heads = 2 * h;
  gqa.kv_heads = h;
  gqa.length = t;
  gqa.head_dim = d;
  EXPECT_STREQ(LolcatsWindowBwdFoldUnsupported(gqa),
               "LolcatsWindowBwd fold: grouped-query heads (d_k, d_v are summed over query heads "
               "after the kernel)");
}

// The window backward's prologue (vector loads a lane) against its float64
// formulas, on rows given as views one element into their buffers (not
// 16-byte aligned: the host copies them) and as fresh tensors: every dtype
// and head size the kernels take, with and without the linear terms and
// the window's weight alpha.
TEST(WindowBwdPrologueGpu, MatchesFloat64OnMisalignedAndFreshRows) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(36);
  const int64_t b = 2, h = 3, t = 77;
  const at::TensorOptions gpu = at::TensorOptions().device(at::kCUDA);
  // x's values in a view one element into a buffer of its dtype.
  const auto misaligned = [](const at::Tensor& x) {
    const at::Tensor buf = at::empty({x.numel() + 1}, x.options());
    at::Tensor view = buf.narrow(0, 1, x.numel()).view(x.sizes());
    view.copy_(x);
    return view;
  };
  for (const int64_t d : {64, 128}) {
    for (const at::ScalarType dy_type : {at::kBFloat16, at::kFloat}) {
      for (const int lin : {0, 1, 2}) {  // none, bf16, float32 linear terms
        for (const bool with_alpha : {false, true}) {
          const std::string what = "D " + std::to_string(d) + ", dy " + c10::toString(dy_type) +
                                   ", linear terms " + std::to_string(lin) +
                                   (with_alpha ? ", alpha" : "");
          const at::Tensor dy = at::randn({b, h, t, d}, gpu.dtype(dy_type));
          const at::Tensor y = at::randn({b, h, t, d}, gpu.dtype(at::kBFloat16));
          const at::Tensor z = at::rand({b, h, t}, gpu.dtype(at::kFloat)) + 0.5;
          const at::Tensor lin_num =
              lin == 0 ? at::Tensor()
                       : at::randn({b, h, t, d}, gpu.dtype(lin == 1 ? at::kBFloat16 : at::kFloat));
          const at::Tensor lin_den = lin == 0 ? at::Tensor() : at::rand({b, h, t}, gpu) + 0.5;
          const at::Tensor alpha = with_alpha ? at::rand({h}, gpu) + 0.5 : at::Tensor();
          // float64: dN = a dy / z, dZ = -a (dy . y) / z, dc = dN . lin + dZ lin_den.
          const at::Tensor a = with_alpha ? alpha.to(at::kDouble).view({1, h, 1})
                                          : at::ones({}, gpu.dtype(at::kDouble));
          const at::Tensor dy64 = dy.to(at::kDouble), z64 = z.to(at::kDouble);
          const at::Tensor dot = (dy64 * y.to(at::kDouble)).sum(-1);
          const at::Tensor want_dn = dy64 * (a / z64).unsqueeze(-1), want_dz = -a * dot / z64;
          testing::PoisonCudaAllocator();
          const detail::WindowBwdGrads fresh =
              detail::WindowBwdPrologueCuda(dy, y, z, lin_num, lin_den, alpha);
          const detail::WindowBwdGrads shifted = detail::WindowBwdPrologueCuda(
              misaligned(dy), misaligned(y), z, lin == 0 ? lin_num : misaligned(lin_num), lin_den,
              alpha);
          for (const detail::WindowBwdGrads* g : {&fresh, &shifted}) {
            const std::string which = what + (g == &fresh ? " (fresh)" : " (misaligned)");
            EXPECT_LT(RelativeError(g->d_num_bf16, want_dn), 4e-3) << which << ": dN";
            EXPECT_LT(RelativeError(g->d_den, want_dz), 1e-5) << which << ": dZ";
            if (with_alpha) {
              EXPECT_LT(RelativeError(g->dy_dot_y, dot), 1e-5) << which << ": dy . y";
            }
            if (lin != 0) {
              const at::Tensor want_dc =
                  (want_dn * lin_num.to(at::kDouble)).sum(-1) + want_dz * lin_den.to(at::kDouble);
              EXPECT_LT(RelativeError(g->dc, want_dc), 1e-5) << which << ": dc";
              if (lin == 2) {
                EXPECT_LT(RelativeError(g->d_num, want_dn), 1e-5) << which << ": float32 dN";
              }
            }
          }
          EXPECT_TRUE(at::equal(fresh.d_num_bf16, shifted.d_num_bf16)) << what;
          EXPECT_TRUE(at::equal(fresh.d_den, shifted.d_den)) << what;
        }
      }
    }
  }
}

}  // namespace
}  // namespace linearize::kernels
