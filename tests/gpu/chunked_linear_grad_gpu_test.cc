// Gradients of detail::ChunkedCausalLinear on the CUDA kernels (forward +
// backward, chunked_linear_grad.h) against LibTorch autograd through the
// same function in float64 on the CPU, on fresh random inputs: plain, GQA,
// gated with mild and strong decays, one block and the two-pass split, float32
// under autocast. The loss weighs num and den with random weights so that
// both gradients are exercised; the CUDA allocator is poisoned first.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/linear_attention/chunked_linear.h"
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
    {"T3000_two_pass_gated", 1, 2, 2, 2, 3000, 128, 128, Gates::kMild, 2},
    {"T4096_two_pass_blocks", 2, 8, 4, 4, 4096, 128, 128, Gates::kNone, 0},
    {"T4001_two_pass_strong", 1, 3, 3, 3, 4001, 64, 128, Gates::kStrong, 3},
};

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkedLinearGradGpu, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
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

}  // namespace
}  // namespace linearize::kernels
