// RMSNorm on CPU: the reference against a float64 loop written out by hand,
// and argument checking. The CUDA kernel is compared in tests/gpu/.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/rmsnorm/rmsnorm.h"

namespace linearize::kernels {
namespace {

TEST(RmsNorm, MatchesHandWrittenFloat64Loop) {
  at::manual_seed(7);
  const at::Tensor x = at::randn({3, 5, 48}, at::kDouble) * 3 + 0.5;
  const at::Tensor w = at::randn({48}, at::kDouble);
  const double eps = 1e-5;
  const at::Tensor y = RmsNorm(x, w, eps);
  const auto xa = x.accessor<double, 3>();
  const auto wa = w.accessor<double, 1>();
  const auto ya = y.accessor<double, 3>();
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 5; ++j) {
      double ss = 0;
      for (int64_t k = 0; k < 48; ++k) ss += xa[i][j][k] * xa[i][j][k];
      const double inv = 1.0 / std::sqrt(ss / 48 + eps);
      for (int64_t k = 0; k < 48; ++k) {
        ASSERT_NEAR(ya[i][j][k], xa[i][j][k] * inv * wa[k], 1e-12) << i << "," << j << "," << k;
      }
    }
  }
}

TEST(RmsNorm, Bfloat16KeepsDtypeAndTracksFloat32) {
  at::manual_seed(8);
  const at::Tensor x = at::randn({4, 64});
  const at::Tensor w = at::rand({64}) + 0.5;
  const at::Tensor y = RmsNorm(x.to(at::kBFloat16), w.to(at::kBFloat16), 1e-6);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  const at::Tensor ref = RmsNorm(x, w, 1e-6);
  EXPECT_LT((y.to(at::kFloat) - ref).abs().max().item<float>(), 0.05f);
}

TEST(RmsNorm, RejectsMismatchedWeightWithShapesInMessage) {
  const at::Tensor x = at::randn({2, 8});
  try {
    RmsNorm(x, at::ones({7}), 1e-6);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("weight must be [8]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace linearize::kernels
