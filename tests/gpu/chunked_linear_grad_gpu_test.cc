// Gradients of detail::ChunkedCausalLinear on the CUDA kernels (forward +
// backward, chunked_linear_grad.h) against LibTorch autograd through the
// same function in float64 on the CPU, on fresh random inputs: plain, GQA,
// gated with mild and strong decays, one block and the two-pass split, float32
// under autocast; and the delayed-key and normalised training forms, with v
// passed through to a second use or not; and the Hedgehog logits' gradients
// the wgmma kernels form in place of d_phi; the gates' gradient kernels.
// The loss weighs num and den with random weights so that both gradients
// are exercised; the CUDA allocator is poisoned first.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>

#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/chunked_linear_grad.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::RelativeError;
using testing::Seen;

enum class Gates { kNone, kMild, kStrong };

struct Case {
  const char* name;
  int64_t b, h, hk, hv, t, f, d;
  Gates gates;
  int64_t gate_heads;
};

struct Inputs {
  at::Tensor q, k, v, g;  // float64 on the CPU
  at::Tensor w_num, w_den;
  at::Tensor w_v;  // weighs the passed-through v (pass_v forms)
};

Inputs Draw(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  Inputs in;
  in.q = at::rand({c.b, c.h, c.t, c.f}, at::kDouble) * 0.9 + 0.1;
  in.k = at::rand({c.b, c.hk, c.t, c.f}, at::kDouble) * 0.9 + 0.1;
  in.v = at::randn({c.b, c.hv, c.t, c.d}, at::kDouble);
  if (c.gates == Gates::kMild) in.g = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 0.3;
  if (c.gates == Gates::kStrong) {
    in.g = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 3;
    const at::Tensor pos = at::arange(c.t, at::kLong).view({1, 1, c.t}).expand_as(in.g);
    in.g = at::where(pos.remainder(13) == 5, at::full({}, -25.0, at::kDouble), in.g);
  }
  in.w_num = at::randn({c.b, c.h, c.t, c.d}, at::kDouble);
  in.w_den = at::randn({c.b, c.h, c.t}, at::kDouble);
  in.w_v = at::randn({c.b, c.hv, c.t, c.d}, at::kDouble);
  return in;
}

at::Tensor Expand(const at::Tensor& x, int64_t h) {
  return x.size(1) == h ? x : at::repeat_interleave(x, h / x.size(1), 1);
}

struct Result {
  at::Tensor num, den, dq, dk, dv, dg;
};

// Forward and backward of ChunkedCausalLinear on leaves made from the inputs
// (features in `dtype` on `device`; the reference expands heads itself, as
// ChunkedCausalLinear's callers do, so autograd sums the groups).
Result RunChunked(const Inputs& in, int64_t h, at::ScalarType dtype, at::Device device) {
  const auto leaf = [&](const at::Tensor& x, at::ScalarType t) {
    return x.to(t).to(device).detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(in.q, dtype), k = leaf(in.k, dtype), v = leaf(in.v, dtype);
  const at::Tensor g =
      in.g.defined() ? leaf(in.g, device.is_cuda() ? at::kFloat : at::kDouble) : at::Tensor();
  const bool cpu = !device.is_cuda();
  const detail::LinearTerms terms =
      cpu ? detail::ChunkedCausalLinear(q, Expand(k, h), Expand(v, h),
                                        g.defined() ? Expand(g, h) : g, 64)
          : detail::ChunkedCausalLinear(q, k, v, g, 64);
  const at::ScalarType acc = cpu ? at::kDouble : at::kFloat;
  const at::Tensor loss = (terms.num.to(acc) * in.w_num.to(acc).to(device)).sum() +
                          (terms.den.to(acc) * in.w_den.to(acc).to(device)).sum();
  loss.backward();
  Result r{terms.num.detach(), terms.den.detach(), q.grad(), k.grad(), v.grad(), at::Tensor()};
  if (g.defined()) r.dg = g.grad();
  return r;
}

class ChunkedLinearGradGpu : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkedLinearGradGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  const Inputs in = Draw(c, 11 + c.t * 3 + c.f + c.d);
  Inputs seen = in;  // what the kernels see: features rounded to bfloat16
  seen.q = Seen(in.q, at::kBFloat16);
  seen.k = Seen(in.k, at::kBFloat16);
  seen.v = Seen(in.v, at::kBFloat16);
  const Result ref = RunChunked(seen, c.h, at::kDouble, at::kCPU);

  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  const Result got = RunChunked(in, c.h, at::kBFloat16, at::kCUDA);
  EXPECT_EQ(launches.Launches(), 2) << "the forward and backward kernels, once each";
  for (const at::Tensor* t : {&got.num, &got.den, &got.dq, &got.dk, &got.dv}) {
    ASSERT_TRUE(t->defined());
    ASSERT_TRUE(testing::AllFinite(*t)) << "unwritten (NaN-poisoned) or non-finite output";
  }
  EXPECT_EQ(got.dk.sizes(), in.k.sizes());
  EXPECT_EQ(got.dv.sizes(), in.v.sizes());
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(RelativeError(got.num, ref.num), tol) << "num";
  EXPECT_LT(RelativeError(got.den, ref.den), tol) << "den";
  EXPECT_LT(RelativeError(got.dq, ref.dq), tol) << "d phi_q";
  EXPECT_LT(RelativeError(got.dk, ref.dk), tol) << "d phi_k";
  EXPECT_LT(RelativeError(got.dv, ref.dv), tol) << "d v";
  if (c.gates != Gates::kNone) {
    ASSERT_TRUE(got.dg.defined() && testing::AllFinite(got.dg));
    EXPECT_EQ(got.dg.sizes(), in.g.sizes());
    EXPECT_LT(RelativeError(got.dg, ref.dg), tol) << "d log_gamma";
  }
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 2, 1, 64, 64, Gates::kNone, 0},
    {"T37_B2_gqa", 2, 4, 2, 2, 37, 128, 64, Gates::kNone, 0},
    {"T200_gqa_mixed_heads", 2, 4, 1, 2, 200, 64, 128, Gates::kNone, 0},
    {"T129_gated_mild", 2, 4, 2, 2, 129, 128, 128, Gates::kMild, 4},
    {"T300_gated_strong_kvgates", 2, 4, 2, 2, 300, 64, 64, Gates::kStrong, 2},
    {"T700_gated_strong_F128_gqa", 1, 4, 2, 2, 700, 128, 128, Gates::kStrong, 2},
    {"T3000_two_pass_gated", 1, 2, 2, 2, 3000, 128, 128, Gates::kMild, 2},
    {"T4096_two_pass_blocks", 2, 8, 4, 4, 4096, 128, 128, Gates::kNone, 0},
    {"T4001_two_pass_strong", 1, 3, 3, 3, 4001, 64, 128, Gates::kStrong, 3},
};

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkedLinearGradGpu, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// The two other training forms on the same kernels: keys delayed inside
// the kernels (LoLCATs' linear part: query i reads keys j <= i - W) and the
// normalised output y = num / (den + eps) (the baseline's and Lizard's gated
// branch), against float64 autograd through the LibTorch form: a shifted
// copy of phi_k and v, and the division. The normalised cases avoid rows
// that see a single key (T = 1, or right after a gate of -25): there y's
// gradient to phi_q and phi_k is a difference of nearly equal terms (it is
// 0 at eps = 0) that bfloat16 cannot resolve; the un-normalised cases above
// cover those shapes. With pass_v the loss also weighs v as the kernels
// pass it through (as the hybrids' windows read it), so d_v is the sum of
// both ops' gradients: added inside the backward kernel without GQA, after
// it with GQA.
enum class Form { kDelayed, kNormalized };

struct FormCase {
  const char* name;
  Form form;
  Case shape;
  int64_t key_delay;  // kDelayed
  bool pass_v = false;
};

Result RunForm(const FormCase& fc, const Inputs& in, at::Device device) {
  const Case& c = fc.shape;
  const bool cpu = !device.is_cuda();
  const at::ScalarType dtype = cpu ? at::kDouble : at::kBFloat16;
  const auto leaf = [&](const at::Tensor& x, at::ScalarType t) {
    return x.to(t).to(device).detach().requires_grad_(true);
  };
  const at::Tensor q = leaf(in.q, dtype), k = leaf(in.k, dtype), v = leaf(in.v, dtype);
  const at::Tensor g = in.g.defined() ? leaf(in.g, cpu ? at::kDouble : at::kFloat) : at::Tensor();
  const at::ScalarType acc = cpu ? at::kDouble : at::kFloat;
  const at::Tensor w_num = in.w_num.to(acc).to(device), w_den = in.w_den.to(acc).to(device);
  constexpr double kEps = 1e-3;
  Result r;
  at::Tensor loss, v_pass = v;  // the CPU form reads v itself
  if (fc.form == Form::kDelayed) {
    detail::LinearTerms terms;
    if (cpu) {
      const auto delay = [&](const at::Tensor& x) {
        return at::constant_pad_nd(Expand(x, c.h), {0, 0, fc.key_delay, 0}).narrow(2, 0, c.t);
      };
      terms = detail::ChunkedCausalLinear(q, delay(k), delay(v), at::Tensor(), 64);
    } else {
      std::optional<detail::LinearTerms> t = detail::ChunkedCausalLinearTrainCuda(
          q, k, v, at::Tensor(), fc.key_delay, fc.pass_v);
      EXPECT_TRUE(t.has_value()) << "the kernels declined";
      if (!t) return r;
      terms = *t;
      v_pass = terms.v_pass;
    }
    r.num = terms.num.detach();
    r.den = terms.den.detach();
    loss = (terms.num.to(acc) * w_num).sum() + (terms.den.to(acc) * w_den).sum();
  } else {
    at::Tensor y;
    if (cpu) {
      const detail::LinearTerms terms = detail::ChunkedCausalLinear(
          q, Expand(k, c.h), Expand(v, c.h), g.defined() ? Expand(g, c.h) : g, 64);
      y = terms.num / (terms.den.unsqueeze(-1) + kEps);
    } else {
      std::optional<detail::NormalizedLinear> out =
          detail::NormalizedCausalLinearTrainCuda(q, k, v, g, kEps, fc.pass_v);
      EXPECT_TRUE(out.has_value()) << "the kernels declined";
      if (!out) return r;
      y = out->y;
      v_pass = out->v_pass;
    }
    r.num = y.detach();
    loss = (y.to(acc) * w_num).sum();
  }
  if (fc.pass_v) {
    EXPECT_TRUE(v_pass.defined() && v_pass.sizes() == v.sizes()) << "v not passed through";
    if (!v_pass.defined()) return r;
    loss = loss + (v_pass.to(acc) * in.w_v.to(acc).to(device)).sum();
  }
  loss.backward();
  r.dq = q.grad();
  r.dk = k.grad();
  r.dv = v.grad();
  if (g.defined()) r.dg = g.grad();
  return r;
}

class ChunkedLinearTrainFormsGpu : public ::testing::TestWithParam<FormCase> {};

TEST_P(ChunkedLinearTrainFormsGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const FormCase fc = GetParam();
  const Case& c = fc.shape;
  const Inputs in = Draw(c, 23 + c.t * 5 + c.f + c.d);
  Inputs seen = in;
  seen.q = Seen(in.q, at::kBFloat16);
  seen.k = Seen(in.k, at::kBFloat16);
  seen.v = Seen(in.v, at::kBFloat16);
  const Result ref = RunForm(fc, seen, at::kCPU);

  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  const Result got = RunForm(fc, in, at::kCUDA);
  ASSERT_TRUE(got.dq.defined());
  EXPECT_EQ(launches.Launches(), 2) << "the forward and backward kernels, once each";
  for (const at::Tensor* t : {&got.num, &got.dq, &got.dk, &got.dv}) {
    ASSERT_TRUE(testing::AllFinite(*t)) << "unwritten (NaN-poisoned) or non-finite output";
  }
  EXPECT_EQ(got.dk.sizes(), in.k.sizes());
  EXPECT_EQ(got.dv.sizes(), in.v.sizes());
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(RelativeError(got.num, ref.num), tol) << (fc.form == Form::kDelayed ? "num" : "y");
  if (fc.form == Form::kDelayed) {
    EXPECT_LT(RelativeError(got.den, ref.den), tol) << "den";
  }
  EXPECT_LT(RelativeError(got.dq, ref.dq), tol) << "d phi_q";
  EXPECT_LT(RelativeError(got.dk, ref.dk), tol) << "d phi_k";
  EXPECT_LT(RelativeError(got.dv, ref.dv), tol) << "d v";
  if (fc.form == Form::kDelayed && fc.key_delay > 0) {
    // The last key_delay keys reach no query: exactly zero gradients (d_v's
    // rows there are the passed-through v's alone).
    const int64_t tail = std::min(c.t, fc.key_delay);
    EXPECT_EQ(got.dk.narrow(2, c.t - tail, tail).abs().max().item<float>(), 0.f);
    const at::Tensor dv_tail = got.dv.narrow(2, c.t - tail, tail).cpu().to(at::kDouble);
    if (fc.pass_v) {
      const at::Tensor w_tail = in.w_v.narrow(2, c.t - tail, tail).to(at::kBFloat16);
      EXPECT_TRUE(at::equal(dv_tail, w_tail.to(at::kDouble))) << "d v's tail";
    } else {
      EXPECT_EQ(dv_tail.abs().max().item<double>(), 0.0);
    }
  }
  if (got.dg.defined()) {
    EXPECT_LT(RelativeError(got.dg, ref.dg), tol) << "d log_gamma";
  }
}

const FormCase kFormCases[] = {
    {"delayed_T37_shorter_than_delay", Form::kDelayed,
     {"", 1, 2, 2, 2, 37, 64, 64, Gates::kNone, 0}, 64},
    {"delayed_T200_gqa", Form::kDelayed, {"", 2, 4, 2, 1, 200, 128, 64, Gates::kNone, 0}, 64},
    {"delayed_T300_window_37", Form::kDelayed, {"", 1, 2, 2, 2, 300, 64, 128, Gates::kNone, 0}, 37},
    {"delayed_T4096_two_pass", Form::kDelayed,
     {"", 1, 8, 8, 8, 4096, 128, 128, Gates::kNone, 0}, 64},
    {"normalized_T65", Form::kNormalized, {"", 1, 2, 2, 2, 65, 64, 64, Gates::kNone, 0}, 0},
    {"normalized_T129_gqa", Form::kNormalized, {"", 2, 4, 2, 2, 129, 128, 128, Gates::kNone, 0}, 0},
    {"normalized_T300_gated_kvgates", Form::kNormalized,
     {"", 2, 4, 2, 2, 300, 64, 64, Gates::kMild, 2}, 0},
    {"normalized_T3000_two_pass_gated", Form::kNormalized,
     {"", 1, 2, 2, 2, 3000, 128, 128, Gates::kMild, 2}, 0},
    {"delayed_T37_pass_v", Form::kDelayed, {"", 1, 2, 2, 2, 37, 64, 64, Gates::kNone, 0}, 64, true},
    {"delayed_T200_gqa_pass_v", Form::kDelayed,
     {"", 2, 4, 2, 1, 200, 128, 64, Gates::kNone, 0}, 64, true},
    {"delayed_T4096_two_pass_pass_v", Form::kDelayed,
     {"", 1, 8, 8, 8, 4096, 128, 128, Gates::kNone, 0}, 64, true},
    {"normalized_T3000_two_pass_gated_pass_v", Form::kNormalized,
     {"", 1, 2, 2, 2, 3000, 128, 128, Gates::kMild, 2}, 0, true},
};

INSTANTIATE_TEST_SUITE_P(Forms, ChunkedLinearTrainFormsGpu, ::testing::ValuesIn(kFormCases),
                         [](const ::testing::TestParamInfo<FormCase>& info) {
                           return std::string(info.param.name);
                         });

// Float32 features under CUDA autocast take the kernels (in bfloat16, as
// autocast's matmuls would) and get float32 gradients; without autocast they
// keep the exact LibTorch form.
TEST(ChunkedLinearGradGpuRouting, Float32UnderAutocastOnly) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c{"T150", 1, 2, 2, 2, 150, 64, 64, Gates::kMild, 2};
  const Inputs in = Draw(c, 5);
  Inputs seen = in;
  seen.q = Seen(in.q, at::kBFloat16);
  seen.k = Seen(in.k, at::kBFloat16);
  seen.v = Seen(in.v, at::kBFloat16);
  const Result ref = RunChunked(seen, c.h, at::kDouble, at::kCPU);
  {
    const testing::LaunchCounter launches;
    const Result plain = RunChunked(in, c.h, at::kFloat, at::kCUDA);
    EXPECT_EQ(launches.Launches(), 0) << "float32 without autocast: LibTorch form";
  }
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  const testing::LaunchCounter launches;
  const Result got = RunChunked(in, c.h, at::kFloat, at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::clear_cache();
  EXPECT_EQ(launches.Launches(), 2);
  EXPECT_EQ(got.dq.scalar_type(), at::kFloat);
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(RelativeError(got.dq, ref.dq), tol) << "d phi_q";
  EXPECT_LT(RelativeError(got.dk, ref.dk), tol) << "d phi_k";
  EXPECT_LT(RelativeError(got.dv, ref.dv), tol) << "d v";
  EXPECT_LT(RelativeError(got.dg, ref.dg), tol) << "d log_gamma";
}

// The Hedgehog logits' gradients (ChunkedLinearTermsBackwardCuda with
// hedgehog_logits, the wgmma kernels): dl formed in float64 from the same
// call's d_phi without the flag and phi = [softmax(l), softmax(-l)] (the
// kernels form it from the unrounded d_phi, so the bound is bf16's). With
// LoLCATs' key delay and without, GQA (kv heads summed in float32), and the
// two-pass split from the forward's block states.
struct LogitsCase {
  const char* name;
  int64_t b, h, hk, t, key_delay;
};

at::Tensor HedgehogPhi(const at::Tensor& l) {
  return at::cat({at::softmax(l, -1), at::softmax(-l, -1)}, -1);
}

at::Tensor LogitsGradOf(const at::Tensor& phi, const at::Tensor& d_phi) {
  const int64_t fh = phi.size(3) / 2;
  const at::Tensor p = phi.narrow(3, 0, fh), n = phi.narrow(3, fh, fh);
  const at::Tensor dp = d_phi.narrow(3, 0, fh), dn = d_phi.narrow(3, fh, fh);
  return p * (dp - (dp * p).sum(-1, true)) - n * (dn - (dn * n).sum(-1, true));
}

class HedgehogLogitsGpu : public ::testing::TestWithParam<LogitsCase> {};

TEST_P(HedgehogLogitsGpu, MatchTheMapsBackwardOfDphi) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  if (!detail::WgmmaKernelsApply(at::Device(at::kCUDA, 0))) GTEST_SKIP() << "sm_90a kernels only";
  const LogitsCase c = GetParam();
  at::manual_seed(71 + c.t + c.hk + c.key_delay);
  const auto gpu = [](const at::Tensor& x) { return x.to(at::kBFloat16).cuda(); };
  const at::Tensor phi_q = gpu(HedgehogPhi(at::randn({c.b, c.h, c.t, 64}, at::kDouble) * 2));
  const at::Tensor phi_k = gpu(HedgehogPhi(at::randn({c.b, c.hk, c.t, 64}, at::kDouble) * 2));
  const at::Tensor v = gpu(at::randn({c.b, c.hk, c.t, 128}, at::kDouble));
  detail::CudaLinearInputs in;
  in.phi_q = phi_q;
  in.phi_k = phi_k;
  in.v = v;
  in.key_delay = c.key_delay;
  in.want_y = false;
  in.want_num_den = true;
  in.num_in_input_dtype = true;
  in.keep_block_states = true;
  const std::optional<detail::CudaLinearOutputs> fwd = detail::ChunkedCausalLinearCuda(in);
  ASSERT_TRUE(fwd.has_value()) << "the forward kernel declined";
  const at::Tensor d_num = gpu(at::randn({c.b, c.h, c.t, 128}, at::kDouble));
  const at::Tensor d_den = at::randn({c.b, c.h, c.t}, at::kDouble).to(at::kFloat).cuda();
  const auto backward = [&](bool logits) {
    return detail::ChunkedLinearTermsBackwardCuda(phi_q, phi_k, v, d_num, d_den, at::Tensor(),
                                                  fwd->block_states, fwd->block_chunks, c.key_delay,
                                                  logits);
  };
  const detail::LinearTermGrads plain = backward(false);
  testing::PoisonCudaAllocator();
  const detail::LinearTermGrads got = backward(true);
  ASSERT_TRUE(testing::AllFinite(got.d_phi_q) && testing::AllFinite(got.d_phi_k))
      << "unwritten (NaN-poisoned) or non-finite output";
  EXPECT_EQ(got.d_phi_q.sizes(), at::IntArrayRef({c.b, c.h, c.t, 64}));
  EXPECT_EQ(got.d_phi_k.sizes(), at::IntArrayRef({c.b, c.hk, c.t, 64}));
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(RelativeError(got.d_phi_q,
                          LogitsGradOf(Seen(phi_q, at::kDouble), Seen(plain.d_phi_q, at::kDouble))),
            tol)
      << "d l_q";
  EXPECT_LT(RelativeError(got.d_phi_k,
                          LogitsGradOf(Seen(phi_k, at::kDouble), Seen(plain.d_phi_k, at::kDouble))),
            tol)
      << "d l_k";
  EXPECT_TRUE(at::equal(got.d_v, plain.d_v)) << "d v changed with the flag";
}

const LogitsCase kLogitsCases[] = {
    {"T300_delay64", 1, 2, 2, 300, 64},
    {"T333_B2_gqa2_delay64", 2, 4, 2, 333, 64},
    {"T200_nodelay", 1, 3, 3, 200, 0},
    {"T4100_delay64_split", 1, 4, 4, 4100, 64},
};

INSTANTIATE_TEST_SUITE_P(Cases, HedgehogLogitsGpu, ::testing::ValuesIn(kLogitsCases),
                         [](const ::testing::TestParamInfo<LogitsCase>& info) {
                           return std::string(info.param.name);
                         });

// The gates' gradient kernels (gate_grad_params.h) against their LibTorch
// reference in float64: suffix sums over rows of one element, of one
// segment and a position more, of many segments, grouped heads.
TEST(GateGradientGpu, MatchesTheReferenceInFloat64) {
  struct Shape {
    int64_t b, h, g, t;
  };
  at::manual_seed(41);
  for (const Shape& s :
       {Shape{1, 2, 2, 1}, Shape{1, 3, 1, 1025}, Shape{2, 4, 2, 3000}, Shape{1, 32, 32, 32768},
        // more than 256 later segments (the suffix kernel's stride loop),
        // and more rows than grid y could take
        Shape{1, 1, 1, 300000}, Shape{1, 70000, 70000, 3}}) {
    const std::string name = "B" + std::to_string(s.b) + " H" + std::to_string(s.h) + " G" +
                             std::to_string(s.g) + " T" + std::to_string(s.t);
    const at::Tensor q_dot = at::randn({s.b, s.h, s.t}, at::kFloat);
    const at::Tensor k_dot = at::randn({s.b, s.h, s.t}, at::kFloat);
    testing::PoisonCudaAllocator();
    const at::Tensor got = detail::GateGradientCuda(q_dot.cuda(), k_dot.cuda(), s.g);
    const at::Tensor want =
        detail::GateGradientReference(q_dot.to(at::kDouble), k_dot.to(at::kDouble), s.g);
    ASSERT_EQ(got.sizes(), want.sizes()) << name;
    ASSERT_TRUE(testing::AllFinite(got)) << name << ": unwritten (NaN-poisoned)";
    EXPECT_LT(RelativeError(got, want), 1e-5) << name;
    // The last position is one row's difference summed over the group alone.
    EXPECT_LT(RelativeError(got.select(2, s.t - 1), want.select(2, s.t - 1)), 1e-5) << name;
  }
  EXPECT_THROW(
      detail::GateGradientCuda(at::zeros({1, 3, 8}, at::kCUDA), at::zeros({1, 3, 8}, at::kCUDA), 2),
      c10::Error)
      << "2 gate heads do not divide 3 query heads";
  EXPECT_EQ(
      detail::GateGradientCuda(at::zeros({1, 2, 0}, at::kCUDA), at::zeros({1, 2, 0}, at::kCUDA), 1)
          .sizes(),
      (std::vector<int64_t>{1, 1, 0}))
      << "no positions: an empty gradient, as the reference gives";
}

}  // namespace
}  // namespace linearize::kernels
