// Rotary embedding and SwiGLU's SiluMul on CPU: the entry points against
// float64 loops written out by hand, and argument checking. The CUDA kernels
// are compared with these references in tests/gpu/elementwise_gpu_test.cc.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kernels/rope/rope.h"
#include "kernels/swiglu/swiglu.h"

namespace linearize::kernels {
namespace {

// y[i] = x[i] cos[i] - x[i + D/2] sin[i], y[i + D/2] = x[i + D/2] cos[i + D/2] + x[i] sin[i + D/2].
void ExpectRotated(const at::Tensor& x, const at::Tensor& cos4, const at::Tensor& sin4,
                   const at::Tensor& y) {
  const int64_t b = x.size(0), h = x.size(1), t = x.size(2), d = x.size(3), half = d / 2;
  const at::Tensor c = cos4.expand({b, h, t, d}), s = sin4.expand({b, h, t, d});
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t hi = 0; hi < h; ++hi) {
      for (int64_t ti = 0; ti < t; ++ti) {
        for (int64_t i = 0; i < half; ++i) {
          const double x1 = x[bi][hi][ti][i].item<double>();
          const double x2 = x[bi][hi][ti][i + half].item<double>();
          const double want1 =
              x1 * c[bi][hi][ti][i].item<double>() - x2 * s[bi][hi][ti][i].item<double>();
          const double want2 = x2 * c[bi][hi][ti][i + half].item<double>() +
                               x1 * s[bi][hi][ti][i + half].item<double>();
          ASSERT_NEAR(y[bi][hi][ti][i].item<double>(), want1, 1e-12);
          ASSERT_NEAR(y[bi][hi][ti][i + half].item<double>(), want2, 1e-12);
        }
      }
    }
  }
}

TEST(Rotary, SharedTableMatchesHandWrittenLoop) {
  at::manual_seed(11);
  const at::Tensor x = at::randn({2, 3, 5, 8}, at::kDouble);
  const at::Tensor cos = at::randn({5, 8}, at::kDouble), sin = at::randn({5, 8}, at::kDouble);
  ExpectRotated(x, cos, sin, Rotary(x, cos, sin));
}

// Decoding rows at different positions: one table row per batch row.
TEST(Rotary, PerRowTableMatchesHandWrittenLoop) {
  at::manual_seed(12);
  const at::Tensor x = at::randn({3, 4, 1, 6}, at::kDouble);
  const at::Tensor cos = at::randn({3, 1, 1, 6}, at::kDouble);
  const at::Tensor sin = at::randn({3, 1, 1, 6}, at::kDouble);
  ExpectRotated(x, cos, sin, Rotary(x, cos, sin));
}

// q as the model takes it: a head-split, transposed slice of a fused q/k/v
// projection (strided, last dimension contiguous).
TEST(Rotary, StridedViewOfAFusedProjection) {
  at::manual_seed(13);
  const at::Tensor qkv = at::randn({2, 5, 3 * 4 * 8}, at::kDouble);
  const at::Tensor q = qkv.narrow(-1, 32, 32).view({2, 5, 4, 8}).transpose(1, 2);
  const at::Tensor cos = at::randn({5, 8}, at::kDouble), sin = at::randn({5, 8}, at::kDouble);
  ExpectRotated(q, cos, sin, Rotary(q, cos, sin));
}

TEST(Rotary, RefusesShapesItCannotRotate) {
  const at::Tensor x = at::randn({1, 2, 3, 8});
  try {
    Rotary(x, at::randn({4, 8}), at::randn({4, 8}));
    FAIL() << "a table of 4 positions for 3 was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("[T, D] = [3, 8]"), std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_THROW(Rotary(at::randn({1, 2, 3, 7}), at::randn({3, 7}), at::randn({3, 7})), c10::Error);
  EXPECT_THROW(Rotary(at::randn({2, 3, 8}), at::randn({3, 8}), at::randn({3, 8})), c10::Error);
}

// q and k with their own head counts (GQA) in one call.
TEST(RotaryQk, RotatesBothLikeRotary) {
  at::manual_seed(15);
  const at::Tensor q = at::randn({2, 4, 3, 8}, at::kDouble),
                   k = at::randn({2, 2, 3, 8}, at::kDouble);
  const at::Tensor cos = at::randn({2, 1, 3, 8}, at::kDouble);
  const at::Tensor sin = at::randn({2, 1, 3, 8}, at::kDouble);
  const auto [qr, kr] = RotaryQk(q, k, cos, sin);
  ExpectRotated(q, cos, sin, qr);
  ExpectRotated(k, cos, sin, kr);
  EXPECT_THROW(RotaryQk(q, at::randn({2, 2, 4, 8}, at::kDouble), cos, sin), c10::Error);
}

TEST(SiluMul, MatchesHandWrittenLoop) {
  at::manual_seed(14);
  const at::Tensor gate_up = at::randn({2, 3, 10}, at::kDouble) * 3;
  const at::Tensor y = SiluMul(gate_up);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{2, 3, 5}));
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      for (int64_t k = 0; k < 5; ++k) {
        const double g = gate_up[i][j][k].item<double>(), u = gate_up[i][j][k + 5].item<double>();
        ASSERT_NEAR(y[i][j][k].item<double>(), g / (1 + std::exp(-g)) * u, 1e-12);
      }
    }
  }
}

TEST(SiluMul, RefusesAnOddLastDimension) {
  try {
    SiluMul(at::randn({2, 7}));
    FAIL() << "an odd gate/up width was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("[..., 2I]"), std::string::npos)
        << e.what_without_backtrace();
  }
}

}  // namespace
}  // namespace linearize::kernels
