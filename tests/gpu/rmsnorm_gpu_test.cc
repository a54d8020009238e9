// CUDA RMSNorm against the LibTorch reference computed in float32 on the CPU,
// on fresh random inputs, with poisoned output memory.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/rmsnorm/rmsnorm.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::kernels {
namespace {

struct Case { int64_t rows, dim; at::ScalarType dtype; double tol; };

class RmsNormGpu : public ::testing::TestWithParam<Case> {};

TEST_P(RmsNormGpu, MatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(1234 + c.rows + c.dim);
  const at::Tensor x = (at::randn({c.rows, c.dim}) * 2 + 0.3).to(c.dtype);
  const at::Tensor w = (at::rand({c.dim}) + 0.5).to(c.dtype);
  testing::PoisonCudaAllocator();
  const at::Tensor y = RmsNorm(x.cuda(), w.cuda(), 1e-5);
  ASSERT_FALSE(y.isnan().any().item<bool>());
  // Reference in float32, then the same final rounding as the kernel's dtype.
  const at::Tensor ref = RmsNormReference(x.to(at::kFloat), w.to(at::kFloat), 1e-5);
  EXPECT_LT(testing::RelativeError(y, ref), c.tol);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNormGpu,
    ::testing::Values(Case{1, 576, at::kFloat, 1e-5}, Case{37, 4096, at::kFloat, 1e-5},
                      Case{129, 100, at::kFloat, 1e-5}, Case{64, 4096, at::kBFloat16, 1e-2},
                      Case{8, 576, at::kHalf, 2e-3}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::string(c10::toString(info.param.dtype)) + "_" +
             std::to_string(info.param.rows) + "x" + std::to_string(info.param.dim);
    });

// Training on the GPU: with autograd recording, RmsNorm must stay
// differentiable (the kernel has none), with the reference's gradients.
TEST(RmsNormGpu, GradientsFlowWhileTraining) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(77);
  const at::Tensor x0 = at::randn({64, 96}), w0 = at::rand({96}) + 0.5, g = at::randn({64, 96});
  at::Tensor x = x0.cuda().requires_grad_(), w = w0.cuda().requires_grad_();
  const at::Tensor y = RmsNorm(x, w, 1e-5);
  ASSERT_TRUE(y.requires_grad());
  y.backward(g.cuda());
  at::Tensor xr = x0.clone().requires_grad_(), wr = w0.clone().requires_grad_();
  RmsNormReference(xr, wr, 1e-5).backward(g);
  EXPECT_LT(testing::RelativeError(x.grad(), xr.grad()), 1e-5);
  EXPECT_LT(testing::RelativeError(w.grad(), wr.grad()), 1e-5);
}

TEST(RmsNormGpu, NonContiguousRows) {
  at::manual_seed(99);
  const at::Tensor base = at::randn({16, 2, 256}, at::kCUDA);
  const at::Tensor x = base.select(1, 1);  // rows strided by 512
  const at::Tensor w = at::rand({256}, at::kCUDA) + 0.5;
  const at::Tensor y = RmsNorm(x, w, 1e-6);
  EXPECT_LT(testing::RelativeError(y, RmsNormReference(x.cpu(), w.cpu(), 1e-6)), 1e-5);
}

}  // namespace
}  // namespace linearize::kernels
