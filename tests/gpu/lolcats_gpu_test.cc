// LoLCATs hybrid through its entry points on the GPU (sliding windows of 64
// and 16, GQA, key maps per query or kv head): ForwardParallel against
// ForwardReference in float64, Prefill's state against the float64 CPU
// Prefill, and batched DecodeStep with rows at different positions (states of
// two prompt lengths joined along the batch) against the float64 CPU
// DecodeStep. Fresh random inputs, outputs poisoned first.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "kernels/lolcats/lolcats_attention.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels::lolcats {
namespace {

using testing::OnGpu;
using testing::RelativeError;
using testing::Seen;

struct Case {
  const char* name;
  int64_t b, hq, hkv, t, d, fh, window;
  bool k_map_per_kv_head;
};

class LolcatsGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

Weights RandomWeights(const Case& c) {
  Weights w;
  w.maps = testing::RandomHedgehog(c.hq, c.k_map_per_kv_head ? c.hkv : c.hq, c.d, c.fh);
  w.window_logit = at::randn({c.hq}, at::kDouble);
  return w;
}
Weights WeightsSeen(const Weights& w, at::ScalarType type) {
  return {testing::MapsSeen(w.maps, type), w.window_logit};
}
Weights WeightsOnGpu(const Weights& w, at::ScalarType type) {
  return {testing::MapsOnGpu(w.maps, type), w.window_logit.cuda()};
}

// Fresh float64 q, k, v, weights and the case's options, seeded by `seed` and the case.
struct Problem {
  at::Tensor q, k, v;
  Weights w;
  Options o;
};
Problem RandomProblem(const Case& c, int64_t seed) {
  at::manual_seed(seed + c.t + c.d + c.window);
  Problem p;
  p.q = at::randn({c.b, c.hq, c.t, c.d}, at::kDouble);
  p.k = at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble);
  p.v = at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble);
  p.w = RandomWeights(c);
  p.o.window = c.window;
  return p;
}

State Join(const State& a, const State& b) {
  return State{at::cat({a.kv, b.kv}), at::cat({a.k_sum, b.k_sum}),
               at::cat({a.k_window, b.k_window}), at::cat({a.v_window, b.v_window}),
               at::cat({a.position, b.position})};
}

void ExpectState(const State& gpu, const State& ref, double tol, const std::string& what) {
  EXPECT_LT(RelativeError(gpu.kv, ref.kv), tol) << what << " kv";
  EXPECT_LT(RelativeError(gpu.k_sum, ref.k_sum), tol) << what << " k_sum";
  EXPECT_LT(RelativeError(gpu.k_window, ref.k_window), tol) << what << " k_window";
  EXPECT_LT(RelativeError(gpu.v_window, ref.v_window), tol) << what << " v_window";
  EXPECT_TRUE(at::equal(gpu.position.cpu(), ref.position)) << what << " position";
}

TEST_P(LolcatsGpu, ForwardAndPrefillMatchFloat64) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  const auto [q, k, v, w, o] = RandomProblem(c, 202);
  const double tol = testing::Tol(dtype);
  const at::Tensor ref_y =
      ForwardReference(Seen(q, dtype), Seen(k, dtype), Seen(v, dtype), WeightsSeen(w, dtype), o);
  testing::PoisonCudaAllocator();
  {
    const testing::LaunchCounter launches;
    const at::Tensor y =
        ForwardParallel(OnGpu(q, dtype), OnGpu(k, dtype), OnGpu(v, dtype), WeightsOnGpu(w, dtype), o);
    // The delayed chunked kernel (bf16: maps fused; float32: two feature-map
    // launches before it) and the window kernel, or in bf16 with the 64-token
    // window the chunked kernel alone, the window fused in; a prompt within
    // the window has no linear part (window kernel only).
    const bool bf16 = dtype == at::kBFloat16;
    const int64_t expected = c.t <= c.window ? 1 : bf16 && c.window == 64 ? 1 : bf16 ? 2 : 4;
    EXPECT_EQ(launches.Launches(), expected) << "the CUDA kernels did not all run";
    ASSERT_TRUE(testing::AllFinite(y));
    EXPECT_EQ(y.scalar_type(), dtype);
    EXPECT_LT(RelativeError(y, ref_y), tol) << "ForwardParallel";
  }
  const PrefillResult ref =
      Prefill(Seen(q, dtype), Seen(k, dtype), Seen(v, dtype), WeightsSeen(w, dtype), o);
  testing::PoisonCudaAllocator();
  const PrefillResult gpu =
      Prefill(OnGpu(q, dtype), OnGpu(k, dtype), OnGpu(v, dtype), WeightsOnGpu(w, dtype), o);
  ASSERT_TRUE(testing::AllFinite(gpu.y) && testing::AllFinite(gpu.state.kv));
  EXPECT_LT(RelativeError(gpu.y, ref.y), tol) << "Prefill y";
  ExpectState(gpu.state, ref.state, tol, "Prefill");
}

// A prompt in two Prefill calls, the second continuing the first's state,
// runs on the kernels both times and gives the float64 CPU Prefill of the
// whole prompt: y and the state (continuing before the window has filled,
// and after).
TEST_P(LolcatsGpu, PrefillContinuesAStateOnTheKernels) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  if (c.t < 2) GTEST_SKIP() << "one token cannot be split";
  const auto [q, k, v, w, o] = RandomProblem(c, 505);
  const double tol = testing::Tol(dtype);
  const PrefillResult ref =
      Prefill(Seen(q, dtype), Seen(k, dtype), Seen(v, dtype), WeightsSeen(w, dtype), o);
  testing::PoisonCudaAllocator();
  const int64_t first = std::max<int64_t>(1, c.t / 3), rest = c.t - first;
  const auto part = [&](const at::Tensor& x, int64_t from, int64_t len) {
    return OnGpu(x, dtype).narrow(2, from, len);
  };
  const Weights gw = WeightsOnGpu(w, dtype);
  const PrefillResult a =
      Prefill(part(q, 0, first), part(k, 0, first), part(v, 0, first), gw, o);
  const testing::LaunchCounter launches;
  const PrefillResult b =
      Prefill(part(q, first, rest), part(k, first, rest), part(v, first, rest), gw, o, &a.state);
  // The chunked kernel from the state and the window kernel (in bf16 with
  // the 64-token window, the chunked kernel with the window fused in).
  const int64_t expected = dtype == at::kBFloat16 && c.window == 64 ? 1 : 2;
  EXPECT_EQ(launches.AttentionLaunches(), expected)
      << "the continuing prefill did not run on the kernels";
  ASSERT_TRUE(testing::AllFinite(b.y));
  EXPECT_LT(RelativeError(at::cat({a.y, b.y}, 2), ref.y), tol) << "continued Prefill y";
  ExpectState(b.state, ref.state, tol, "continued Prefill");
}

TEST_P(LolcatsGpu, DecodeRowsAtDifferentPositions) {
  const auto [c, dtype] = GetParam();
  at::manual_seed(303 + c.t + c.d + c.window);
  const int64_t len0 = c.t, len1 = std::max<int64_t>(1, c.t / 3), steps = 3;
  const auto rand_seq = [&](int64_t h, int64_t len) {
    return at::randn({1, h, len + steps, c.d}, at::kDouble);
  };
  const at::Tensor q0 = rand_seq(c.hq, len0), k0 = rand_seq(c.hkv, len0), v0 = rand_seq(c.hkv, len0);
  const at::Tensor q1 = rand_seq(c.hq, len1), k1 = rand_seq(c.hkv, len1), v1 = rand_seq(c.hkv, len1);
  const Weights w = RandomWeights(c);
  Options o;
  o.window = c.window;
  const double tol = testing::Tol(dtype);
  const auto pre = [](const at::Tensor& x, int64_t len) { return x.narrow(2, 0, len); };
  const Weights rw = WeightsSeen(w, dtype), gw = WeightsOnGpu(w, dtype);
  State ref = Join(Prefill(pre(Seen(q0, dtype), len0), pre(Seen(k0, dtype), len0),
                           pre(Seen(v0, dtype), len0), rw, o).state,
                   Prefill(pre(Seen(q1, dtype), len1), pre(Seen(k1, dtype), len1),
                           pre(Seen(v1, dtype), len1), rw, o).state);
  State gpu = Join(Prefill(pre(OnGpu(q0, dtype), len0), pre(OnGpu(k0, dtype), len0),
                           pre(OnGpu(v0, dtype), len0), gw, o).state,
                   Prefill(pre(OnGpu(q1, dtype), len1), pre(OnGpu(k1, dtype), len1),
                           pre(OnGpu(v1, dtype), len1), gw, o).state);
  for (int64_t s = 0; s < steps; ++s) {
    const auto tok = [&](const at::Tensor& a, int64_t la, const at::Tensor& b, int64_t lb) {
      return at::cat({a.narrow(2, la + s, 1), b.narrow(2, lb + s, 1)});
    };
    const at::Tensor ry = DecodeStep(ref, tok(Seen(q0, dtype), len0, Seen(q1, dtype), len1),
                                     tok(Seen(k0, dtype), len0, Seen(k1, dtype), len1),
                                     tok(Seen(v0, dtype), len0, Seen(v1, dtype), len1), rw, o);
    testing::PoisonCudaAllocator();
    const testing::LaunchCounter launches;
    const at::Tensor gy = DecodeStep(gpu, tok(OnGpu(q0, dtype), len0, OnGpu(q1, dtype), len1),
                                     tok(OnGpu(k0, dtype), len0, OnGpu(k1, dtype), len1),
                                     tok(OnGpu(v0, dtype), len0, OnGpu(v1, dtype), len1), gw, o);
    EXPECT_EQ(launches.Launches(), 1) << "the decode kernels did not run";
    ASSERT_TRUE(testing::AllFinite(gy));
    EXPECT_LT(RelativeError(gy, ry), tol) << "DecodeStep " << s;
  }
  ExpectState(gpu, ref, tol, "after decode");
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 1, 64, 32, 64, false},
    {"T10_below_window_B2_gqa", 2, 4, 2, 10, 64, 64, 64, false},
    {"T64", 1, 2, 1, 64, 128, 64, 64, true},
    {"T100_B2_gqa", 2, 4, 2, 100, 128, 64, 64, false},
    {"T300_window16", 2, 2, 2, 300, 64, 32, 16, true},
    {"T1111_D128", 1, 4, 2, 1111, 128, 64, 64, false},
    // The other feature / head dims of the fused window (F = 2 Fh).
    {"T200_D64_F128", 1, 2, 2, 200, 64, 64, 64, true},
    {"T333_B2_gqa4_D128_F64", 2, 4, 1, 333, 128, 32, 64, false},
    // 128 (b, h) fill the device: one block of 8 chunks per sequence, so the
    // fused window's buffers are reused chunk after chunk.
    {"T500_B4_H32_one_block", 4, 32, 8, 500, 128, 64, 64, false},
    // The decode kernel splits each head's columns over 4, 2 or 1 CTAs,
    // whichever fills one wave of the GPU (132 SMs on an H100): the cases
    // above take 4 splits, these 2 (64 rows x heads) and 1 (192).
    {"T90_B2_H32_two_splits", 2, 32, 8, 90, 128, 64, 64, false},
    {"T70_B6_H32_one_split", 6, 32, 8, 70, 64, 32, 64, true},
};

INSTANTIATE_TEST_SUITE_P(
    Shapes, LolcatsGpu,
    ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             testing::DtypeName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace linearize::kernels::lolcats
