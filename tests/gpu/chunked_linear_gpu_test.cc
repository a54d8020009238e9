// The chunked causal linear attention kernel (plain, GQA, gated with mild and
// strong decays including exact zeros, keys delayed as LoLCATs uses them, one
// block and the two-pass split; from the empty state and from a given one)
// against detail::ChunkedCausalLinear in float64 on the CPU, on fresh random
// inputs, outputs poisoned first.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "kernels/feature_map/feature_map.h"
#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::OnGpu;
using testing::RelativeError;
using testing::Seen;

enum class Gates { kNone, kMild, kStrong };

struct Case {
  const char* name;
  int64_t b, h, hk, hv, t, f, d;
  Gates gates;
  int64_t gate_heads;  // Hg
  int64_t delay;
};

class ChunkedLinearGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

at::Tensor Expand(const at::Tensor& x, int64_t h) {
  return x.size(1) == h ? x : at::repeat_interleave(x, h / x.size(1), 1);
}
at::Tensor Delay(const at::Tensor& x, int64_t delay) {
  if (delay == 0) return x;
  return at::constant_pad_nd(x, {0, 0, delay, 0}).narrow(2, 0, x.size(2));
}

TEST_P(ChunkedLinearGpu, MatchesFloat64Reference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(7 + c.t * 31 + c.f + c.d + (dtype == at::kFloat ? 1 : 0));
  const at::Tensor phi_q = at::rand({c.b, c.h, c.t, c.f}, at::kDouble) * 0.9 + 0.1;
  const at::Tensor phi_k = at::rand({c.b, c.hk, c.t, c.f}, at::kDouble) * 0.9 + 0.1;
  const at::Tensor v = at::randn({c.b, c.hv, c.t, c.d}, at::kDouble);
  at::Tensor lg;
  if (c.gates == Gates::kMild) {
    lg = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 0.3;
  } else if (c.gates == Gates::kStrong) {
    lg = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 3;
    const at::Tensor pos = at::arange(c.t, at::kLong).view({1, 1, c.t}).expand_as(lg);
    lg = at::where(pos.remainder(13) == 5, at::full({}, -25.0, at::kDouble), lg);
    lg = at::where(pos.remainder(71) == 40,
                   at::full({}, -std::numeric_limits<double>::infinity(), at::kDouble), lg);
  }

  // Reference: the same (rounded) values, expanded to H heads, keys delayed.
  const at::Tensor rq = Seen(phi_q, dtype);
  const at::Tensor rk = Delay(Expand(Seen(phi_k, dtype), c.h), c.delay);
  const at::Tensor rv = Delay(Expand(Seen(v, dtype), c.h), c.delay);
  const at::Tensor rg = lg.defined() ? Expand(lg, c.h) : at::Tensor();
  // From the empty state, then from a random one (a prefill that continues a
  // sequence; float32 values, as the kernel keeps its state).
  const at::Tensor kv0 = (at::randn({c.b, c.h, c.f, c.d}, at::kDouble) * 3).to(at::kFloat);
  const at::Tensor k_sum0 = (at::rand({c.b, c.h, c.f}, at::kDouble) * 5 + 1).to(at::kFloat);
  for (const bool from_state : {false, true}) {
    const std::string what = from_state ? " (from a state)" : "";
    const detail::LinearTerms ref =
        from_state ? detail::ChunkedCausalLinear(rq, rk, rv, rg, 64, kv0.to(at::kDouble),
                                                 k_sum0.to(at::kDouble))
                   : detail::ChunkedCausalLinear(rq, rk, rv, rg, 64);
    const double eps = 1e-6;
    const at::Tensor ref_y = ref.num / (ref.den.unsqueeze(-1) + eps);

    testing::PoisonCudaAllocator();
    const testing::LaunchCounter launches;
    detail::CudaLinearInputs in;
    in.phi_q = OnGpu(phi_q, dtype);
    in.phi_k = OnGpu(phi_k, dtype);
    in.v = OnGpu(v, dtype);
    if (lg.defined()) in.log_gamma = lg.to(at::kFloat).cuda();
    if (from_state) {
      in.kv0 = kv0.cuda();
      in.k_sum0 = k_sum0.cuda();
    }
    in.key_delay = c.delay;
    in.eps = eps;
    in.want_y = in.want_num_den = in.want_state = true;
    const std::optional<detail::CudaLinearOutputs> out = detail::ChunkedCausalLinearCuda(in);
    ASSERT_TRUE(out.has_value()) << "kernel declined the inputs" << what;
    EXPECT_EQ(launches.Launches(), 1);
    const double tol = testing::Tol(dtype);
    for (const at::Tensor* t : {&out->y, &out->num, &out->den, &out->kv, &out->k_sum}) {
      ASSERT_TRUE(testing::AllFinite(*t))
          << "unwritten (NaN-poisoned) or non-finite output" << what;
    }
    EXPECT_LT(RelativeError(out->y, ref_y), tol) << "y" << what;
    EXPECT_LT(RelativeError(out->num, ref.num), tol) << "num" << what;
    EXPECT_LT(RelativeError(out->den, ref.den), tol) << "den" << what;
    EXPECT_LT(RelativeError(out->kv, ref.kv), tol) << "kv" << what;
    EXPECT_LT(RelativeError(out->k_sum, ref.k_sum), tol) << "k_sum" << what;
  }
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 2, 1, 64, 64, Gates::kNone, 0, 0},
    {"T37_B2_gqa", 2, 4, 2, 2, 37, 128, 64, Gates::kNone, 0, 0},
    {"T200_gqa_mixed_heads", 2, 4, 1, 2, 200, 64, 128, Gates::kNone, 0, 0},
    {"T129_gated_mild", 2, 4, 2, 2, 129, 128, 128, Gates::kMild, 4, 0},
    {"T300_gated_strong_kvgates", 2, 4, 2, 2, 300, 64, 64, Gates::kStrong, 2, 0},
    {"T3000_two_pass_gated", 1, 2, 2, 2, 3000, 128, 128, Gates::kMild, 2, 0},
    {"T4096_two_pass_blocks", 2, 8, 4, 4, 4096, 128, 128, Gates::kNone, 0, 0},
    {"T4001_two_pass_strong", 1, 3, 3, 3, 4001, 64, 128, Gates::kStrong, 3, 0},
    {"T700_delay64", 2, 4, 2, 2, 700, 128, 64, Gates::kNone, 0, 64},
    {"T50_delay16", 1, 2, 2, 2, 50, 64, 64, Gates::kNone, 0, 16},
};

INSTANTIATE_TEST_SUITE_P(
    Shapes, ChunkedLinearGpu,
    ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             testing::DtypeName(std::get<1>(info.param));
    });

// Hedgehog maps fused into the kernel (bf16): raw q, k and the map weights in,
// against the float64 reference on features of the same rounded values.
class ChunkedLinearFusedGpu : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkedLinearFusedGpu, MatchesFloat64Reference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  const at::ScalarType dtype = at::kBFloat16;
  at::manual_seed(9 + c.t * 7 + c.f + c.d);
  const int64_t fh = c.f / 2;
  const at::Tensor q = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor k = at::randn({c.b, c.hk, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor v = at::randn({c.b, c.hv, c.t, c.d}, at::kDouble);
  const at::Tensor qw = at::randn({c.h, c.d, fh}, at::kDouble) / std::sqrt(double(c.d));
  // Key maps per kv head when the case has fewer kv heads, else per query head.
  const int64_t hw = c.hk < c.h ? c.hk : c.h;
  const at::Tensor kw = at::randn({hw, c.d, fh}, at::kDouble) / std::sqrt(double(c.d));
  at::Tensor lg;
  if (c.gates != Gates::kNone) lg = -at::rand({c.b, c.gate_heads, c.t}, at::kDouble) * 2;

  const at::Tensor rq = HedgehogFeatureMap(Seen(q, dtype), Seen(qw, dtype));
  const at::Tensor rk =
      Delay(Expand(HedgehogFeatureMap(Seen(k, dtype), Seen(kw, dtype)), c.h), c.delay);
  const at::Tensor rv = Delay(Expand(Seen(v, dtype), c.h), c.delay);
  const at::Tensor rg = lg.defined() ? Expand(lg, c.h) : at::Tensor();
  const detail::LinearTerms ref = detail::ChunkedCausalLinear(rq, rk, rv, rg, 64);

  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  detail::CudaLinearInputs in;
  in.phi_q = OnGpu(q, dtype);
  in.phi_k = OnGpu(k, dtype);
  in.v = OnGpu(v, dtype);
  in.q_weight = OnGpu(qw, dtype);
  in.k_weight = OnGpu(kw, dtype);
  if (lg.defined()) in.log_gamma = lg.to(at::kFloat).cuda();
  in.key_delay = c.delay;
  in.want_y = false;
  in.want_num_den = in.want_state = true;
  const std::optional<detail::CudaLinearOutputs> out = detail::ChunkedCausalLinearCuda(in);
  ASSERT_TRUE(out.has_value()) << "kernel declined the inputs";
  EXPECT_EQ(launches.Launches(), 1);
  for (const at::Tensor* t : {&out->num, &out->den, &out->kv, &out->k_sum}) {
    ASSERT_TRUE(testing::AllFinite(*t)) << "unwritten (NaN-poisoned) or non-finite output";
  }
  const double tol = testing::Tol(dtype);
  EXPECT_LT(RelativeError(out->num, ref.num), tol) << "num";
  EXPECT_LT(RelativeError(out->den, ref.den), tol) << "den";
  EXPECT_LT(RelativeError(out->kv, ref.kv), tol) << "kv";
  EXPECT_LT(RelativeError(out->k_sum, ref.k_sum), tol) << "k_sum";
}

const Case kFusedCases[] = {
    {"T1", 1, 2, 2, 2, 1, 64, 64, Gates::kNone, 0, 0},
    {"T100_B2_gqa_kvmaps", 2, 4, 2, 2, 100, 128, 128, Gates::kNone, 0, 0},
    {"T77_qmaps_D64", 2, 2, 2, 2, 77, 128, 64, Gates::kMild, 2, 0},
    {"T2500_two_pass_gqa", 1, 4, 2, 2, 2500, 128, 128, Gates::kNone, 0, 0},
    {"T333_delay64_gqa", 2, 4, 1, 1, 333, 64, 128, Gates::kNone, 0, 64},
    {"T3100_two_pass_delay", 1, 2, 2, 2, 3100, 128, 128, Gates::kNone, 0, 64},
};

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkedLinearFusedGpu, ::testing::ValuesIn(kFusedCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(ChunkedLinearGpuDecline, UnsupportedShapesFallBack) {
  // F = 48 is not a kernel shape: the dispatcher declines instead of failing.
  detail::CudaLinearInputs in;
  in.phi_q = at::rand({1, 2, 10, 48}, at::kCUDA);
  in.phi_k = at::rand({1, 2, 10, 48}, at::kCUDA);
  in.v = at::randn({1, 2, 10, 64}, at::kCUDA);
  EXPECT_FALSE(detail::ChunkedCausalLinearCuda(in).has_value());
  in.phi_q = at::rand({1, 2, 10, 64}, at::kCUDA).to(at::kHalf);
  EXPECT_FALSE(detail::ChunkedCausalLinearCuda(in).has_value());
}

}  // namespace
}  // namespace linearize::kernels
