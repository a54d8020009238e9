// The Hedgehog feature-map kernel through HedgehogFeatureMap against the
// float64 CPU result on the same (rounded) inputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "kernels/feature_map/feature_map.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::OnGpu;
using testing::Seen;

struct Case {
  int64_t b, h, t, d, fh;
};

class HedgehogGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

TEST_P(HedgehogGpu, MatchesFloat64Reference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(11 + c.t + c.d + c.fh);
  const at::Tensor x = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor w = at::randn({c.h, c.d, c.fh}, at::kDouble) / std::sqrt(double(c.d));
  const at::Tensor ref = HedgehogFeatureMap(Seen(x, dtype), Seen(w, dtype));
  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  const at::Tensor y = HedgehogFeatureMap(OnGpu(x, dtype), OnGpu(w, dtype));
  EXPECT_EQ(launches.Launches(), 1) << "the CUDA kernel did not run";
  ASSERT_TRUE(testing::AllFinite(y));
  EXPECT_EQ(y.scalar_type(), dtype);
  EXPECT_LT(testing::RelativeError(y, ref), testing::Tol(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HedgehogGpu,
    ::testing::Combine(::testing::Values(Case{1, 2, 1, 64, 32}, Case{2, 3, 100, 128, 64},
                                         Case{1, 2, 130, 64, 64}, Case{2, 1, 65, 128, 32}),
                       ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      const Case& c = std::get<0>(info.param);
      return "T" + std::to_string(c.t) + "_D" + std::to_string(c.d) + "_Fh" +
             std::to_string(c.fh) + "_" + testing::DtypeName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace linearize::kernels
