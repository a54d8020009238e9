// Baseline linear attention through its entry points on the GPU (Hedgehog
// and elu+1 maps, GQA, key maps per query or per kv head): ForwardParallel
// against ForwardReference in float64, Prefill's state against the float64
// CPU Prefill, and batched DecodeStep steps against the float64 CPU
// DecodeStep from that state. Fresh random inputs, outputs poisoned first.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "kernels/linear_attention/linear_attention.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels::linear_attention {
namespace {

using testing::OnGpu;
using testing::RelativeError;
using testing::Seen;

struct Case {
  const char* name;
  int64_t b, hq, hkv, t, d, fh;  // fh = 0: elu+1
  bool k_map_per_kv_head;
};

class LinearAttentionGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

TEST_P(LinearAttentionGpu, PrefillAndDecodeMatchFloat64) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(101 + c.t + c.d + c.fh);
  const int64_t steps = 3;
  const int64_t total = c.t + steps;
  const at::Tensor q = at::randn({c.b, c.hq, total, c.d}, at::kDouble);
  const at::Tensor k = at::randn({c.b, c.hkv, total, c.d}, at::kDouble);
  const at::Tensor v = at::randn({c.b, c.hkv, total, c.d}, at::kDouble);
  FeatureMaps maps;
  if (c.fh > 0) {
    maps = testing::RandomHedgehog(c.hq, c.k_map_per_kv_head ? c.hkv : c.hq, c.d, c.fh);
  } else {
    maps.kind = FeatureMapKind::kEluPlusOne;
  }
  const FeatureMaps ref_maps = testing::MapsSeen(maps, dtype);
  const FeatureMaps gpu_maps = testing::MapsOnGpu(maps, dtype);
  const auto prefix = [&](const at::Tensor& x) { return x.narrow(2, 0, c.t); };
  const double tol = testing::Tol(dtype);

  // Forward over the prompt.
  const at::Tensor ref_y = ForwardReference(prefix(Seen(q, dtype)), prefix(Seen(k, dtype)),
                                            prefix(Seen(v, dtype)), ref_maps);
  testing::PoisonCudaAllocator();
  {
    const testing::LaunchCounter launches;
    const at::Tensor y = ForwardParallel(prefix(OnGpu(q, dtype)), prefix(OnGpu(k, dtype)),
                                         prefix(OnGpu(v, dtype)), gpu_maps);
    // bf16 Hedgehog: maps fused into the chunked kernel; float32 Hedgehog: two
    // feature-map launches and the chunked kernel; elu+1: the chunked kernel.
    const int64_t expected = c.fh > 0 && dtype == at::kFloat ? 3 : 1;
    EXPECT_EQ(launches.Launches(), expected) << "the CUDA kernels did not all run";
    ASSERT_TRUE(testing::AllFinite(y));
    EXPECT_EQ(y.scalar_type(), dtype);
    EXPECT_LT(RelativeError(y, ref_y), tol) << "ForwardParallel";
  }

  // Prefill state, then decode steps on both sides.
  PrefillResult ref = Prefill(prefix(Seen(q, dtype)), prefix(Seen(k, dtype)),
                              prefix(Seen(v, dtype)), ref_maps);
  testing::PoisonCudaAllocator();
  PrefillResult gpu = Prefill(prefix(OnGpu(q, dtype)), prefix(OnGpu(k, dtype)),
                              prefix(OnGpu(v, dtype)), gpu_maps);
  ASSERT_TRUE(testing::AllFinite(gpu.y) && testing::AllFinite(gpu.state.kv) &&
              testing::AllFinite(gpu.state.k_sum));
  EXPECT_LT(RelativeError(gpu.y, ref.y), tol) << "Prefill y";
  EXPECT_LT(RelativeError(gpu.state.kv, ref.state.kv), tol) << "Prefill kv";
  EXPECT_LT(RelativeError(gpu.state.k_sum, ref.state.k_sum), tol) << "Prefill k_sum";
  if (c.t >= 2) {  // the prompt in two calls, the second continuing the first's state
    const int64_t first = std::max<int64_t>(1, c.t / 3), rest = c.t - first;
    const auto part = [&](const at::Tensor& x, int64_t from, int64_t len) {
      return OnGpu(x, dtype).narrow(2, from, len);
    };
    const PrefillResult a =
        Prefill(part(q, 0, first), part(k, 0, first), part(v, 0, first), gpu_maps);
    const testing::LaunchCounter launches;
    const PrefillResult b = Prefill(part(q, first, rest), part(k, first, rest),
                                    part(v, first, rest), gpu_maps, {}, &a.state);
    EXPECT_EQ(launches.AttentionLaunches(), 1)
        << "the continuing prefill did not run on the kernel";
    EXPECT_LT(RelativeError(at::cat({a.y, b.y}, 2), ref.y), tol) << "continued Prefill y";
    EXPECT_LT(RelativeError(b.state.kv, ref.state.kv), tol) << "continued Prefill kv";
    EXPECT_LT(RelativeError(b.state.k_sum, ref.state.k_sum), tol) << "continued Prefill k_sum";
  }
  for (int64_t i = c.t; i < total; ++i) {
    const auto tok = [&](const at::Tensor& x) { return x.narrow(2, i, 1); };
    const at::Tensor ry =
        DecodeStep(ref.state, tok(Seen(q, dtype)), tok(Seen(k, dtype)), tok(Seen(v, dtype)),
                   ref_maps);
    testing::PoisonCudaAllocator();
    const testing::LaunchCounter launches;
    const at::Tensor gy = DecodeStep(gpu.state, tok(OnGpu(q, dtype)), tok(OnGpu(k, dtype)),
                                     tok(OnGpu(v, dtype)), gpu_maps);
    EXPECT_EQ(launches.Launches(), 1) << "the decode kernel did not run";
    ASSERT_TRUE(testing::AllFinite(gy));
    EXPECT_LT(RelativeError(gy, ry), tol) << "DecodeStep at " << i;
  }
  EXPECT_LT(RelativeError(gpu.state.kv, ref.state.kv), tol) << "decoded kv";
  EXPECT_LT(RelativeError(gpu.state.k_sum, ref.state.k_sum), tol) << "decoded k_sum";
}

const Case kCases[] = {
    {"T1_hedgehog", 1, 2, 2, 1, 64, 32, false},
    {"T50_B2_gqa_kvmap", 2, 4, 2, 50, 128, 64, true},
    {"T130_B2_gqa_qmap", 2, 4, 2, 130, 64, 64, false},
    {"T257_elu", 2, 2, 1, 257, 64, 0, false},
    {"T1000_D128", 1, 4, 4, 1000, 128, 64, false},
};

INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearAttentionGpu,
    ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             testing::DtypeName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace linearize::kernels::linear_attention
