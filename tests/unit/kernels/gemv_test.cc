// kernels::Linear / AddLinear on the CPU (LibTorch's path): the products a
// hand-written loop gives, in place where asked, and errors that name the
// shapes.
#include "kernels/gemv/gemv.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/swiglu/swiglu.h"

namespace linearize::kernels {
namespace {

double LoopProduct(const at::Tensor& x, const at::Tensor& w, int64_t m, int64_t n) {
  double s = 0;
  for (int64_t k = 0; k < x.size(1); ++k) s += x[m][k].item<double>() * w[n][k].item<double>();
  return s;
}

TEST(Linear, MatchesAHandWrittenLoopWithBias) {
  at::manual_seed(31);
  const at::Tensor x = at::randn({3, 9}, at::kDouble), w = at::randn({5, 9}, at::kDouble);
  const at::Tensor bias = at::randn({5}, at::kDouble);
  const at::Tensor y = Linear(x, w, bias);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{3, 5}));
  for (int64_t m = 0; m < 3; ++m) {
    for (int64_t n = 0; n < 5; ++n) {
      EXPECT_NEAR(y[m][n].item<double>(), LoopProduct(x, w, m, n) + bias[n].item<double>(), 1e-12);
    }
  }
}

TEST(AddLinear, AccumulatesIntoTheResidualInPlace) {
  at::manual_seed(32);
  const at::Tensor x = at::randn({1, 2, 9}, at::kDouble), w = at::randn({5, 9}, at::kDouble);
  const at::Tensor residual = at::randn({1, 2, 5}, at::kDouble);
  const at::Tensor before = residual.clone();
  const void* storage = residual.data_ptr();
  AddLinear(residual, x, w);
  EXPECT_EQ(residual.data_ptr(), storage);
  for (int64_t m = 0; m < 2; ++m) {
    for (int64_t n = 0; n < 5; ++n) {
      EXPECT_NEAR(residual[0][m][n].item<double>(),
                  before[0][m][n].item<double>() + LoopProduct(x[0], w, m, n), 1e-12);
    }
  }
}

// On the CPU the fused forms are their definitions: the norm, then the
// product (then the SwiGLU gate).
TEST(NormLinear, IsRmsNormThenLinear) {
  at::manual_seed(33);
  const at::Tensor x = at::randn({2, 3, 16}, at::kDouble), g = at::rand({16}, at::kDouble);
  const at::Tensor w = at::randn({10, 16}, at::kDouble), bias = at::randn({10}, at::kDouble);
  EXPECT_TRUE(at::allclose(NormLinear(x, g, 1e-6, w, bias),
                           at::linear(RmsNormReference(x, g, 1e-6), w, bias)));
  const at::Tensor gated = NormGateUp(x, g, 1e-6, w);
  ASSERT_EQ(gated.sizes(), (at::IntArrayRef{2, 3, 5}));
  EXPECT_TRUE(at::allclose(gated, SiluMulReference(at::linear(RmsNormReference(x, g, 1e-6), w))));
}

void ExpectErrorNaming(const std::function<void()>& call, const std::string& words) {
  try {
    call();
    FAIL() << "accepted; expected an error naming " << words;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(words), std::string::npos)
        << e.what_without_backtrace();
  }
}

TEST(Linear, RefusesMismatchedShapesByName) {
  const at::Tensor x = at::randn({2, 8}), w = at::randn({4, 7});
  ExpectErrorNaming([&] { Linear(x, w); }, "x must be [..., K] and w [N, K]");
  ExpectErrorNaming([&] { Linear(x, at::randn({4, 8}), at::randn({3})); }, "bias must be [N]");
  ExpectErrorNaming(
      [&] {
        AddLinear(at::randn({2, 3}), x, at::randn({4, 8}));
      },
      "residual must be contiguous [..., N]");
  ExpectErrorNaming(
      [&] {
        NormLinear(x, at::rand({7}), 1e-6, at::randn({4, 8}));
      },
      "norm_weight must be [K] = [8]");
  ExpectErrorNaming(
      [&] {
        NormGateUp(x, at::rand({8}), 1e-6, at::randn({5, 8}));
      },
      "gate_up must be [2I, K]");
}

}  // namespace
}  // namespace linearize::kernels
