// CUDA rotary embedding and SiluMul against their LibTorch references in
// float32 on the CPU, on fresh random inputs, with poisoned output memory.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "kernels/rope/rope.h"
#include "kernels/swiglu/swiglu.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::kernels {
namespace {

double Tolerance(at::ScalarType type) { return type == at::kFloat ? 1e-5 : 1e-2; }

class ElementwiseGpu : public ::testing::TestWithParam<at::ScalarType> {};

// Shared [T, D] tables over a prefill of 37 positions; q a strided slice of a
// fused projection as the model passes it.
TEST_P(ElementwiseGpu, RotaryPrefillMatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const at::ScalarType type = GetParam();
  at::manual_seed(21);
  const at::Tensor qkv = at::randn({2, 37, (4 + 2 * 2) * 64});
  const at::Tensor q = qkv.narrow(-1, 0, 4 * 64).view({2, 37, 4, 64}).transpose(1, 2);
  const at::Tensor angle = at::rand({37, 64}) * 6;
  const at::Tensor cos = angle.cos(), sin = angle.sin();
  testing::PoisonCudaAllocator();
  const at::Tensor qkv_gpu = qkv.to(at::kCUDA, type);
  const at::Tensor q_gpu = qkv_gpu.narrow(-1, 0, 4 * 64).view({2, 37, 4, 64}).transpose(1, 2);
  const at::Tensor y = Rotary(q_gpu, cos.to(at::kCUDA, type), sin.to(at::kCUDA, type));
  ASSERT_TRUE(y.is_contiguous());
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, RotaryReference(q, cos, sin)), Tolerance(type));
}

// Batched decode: one token per row, each row at its own position.
TEST_P(ElementwiseGpu, RotaryPerRowDecodeMatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const at::ScalarType type = GetParam();
  at::manual_seed(22);
  const at::Tensor k = at::randn({5, 8, 1, 128}) * 2;
  const at::Tensor angle = at::rand({5, 1, 1, 128}) * 100;
  const at::Tensor cos = angle.cos(), sin = angle.sin();
  testing::PoisonCudaAllocator();
  const at::Tensor y =
      Rotary(k.to(at::kCUDA, type), cos.to(at::kCUDA, type), sin.to(at::kCUDA, type));
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, RotaryReference(k, cos, sin)), Tolerance(type));
}

// q and k of a GQA layer in one launch, one decode token per row.
TEST_P(ElementwiseGpu, RotaryQkMatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const at::ScalarType type = GetParam();
  at::manual_seed(25);
  const at::Tensor qkv = at::randn({3, 1, (32 + 2 * 8) * 128}) * 2;
  const auto heads = [](const at::Tensor& rows, int64_t start, int64_t n) {
    return rows.narrow(-1, start * 128, n * 128).view({3, 1, n, 128}).transpose(1, 2);
  };
  const at::Tensor angle = at::rand({3, 1, 1, 128}) * 100;
  const at::Tensor cos = angle.cos(), sin = angle.sin();
  testing::PoisonCudaAllocator();
  const at::Tensor gpu = qkv.to(at::kCUDA, type);
  const auto [q, k] = RotaryQk(heads(gpu, 0, 32), heads(gpu, 32, 8), cos.to(at::kCUDA, type),
                               sin.to(at::kCUDA, type));
  ASSERT_FALSE(q.isnan().any().item<bool>() || k.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(q, RotaryReference(heads(qkv, 0, 32), cos, sin)),
            Tolerance(type));
  EXPECT_LT(testing::RelativeError(k, RotaryReference(heads(qkv, 32, 8), cos, sin)),
            Tolerance(type));
}

TEST_P(ElementwiseGpu, SiluMulMatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const at::ScalarType type = GetParam();
  at::manual_seed(23);
  // Rows strided inside a wider buffer, an odd inner width.
  const at::Tensor wide = at::randn({3, 17, 2 * 1531 + 6}) * 3;
  const at::Tensor gate_up = wide.narrow(-1, 0, 2 * 1531);
  testing::PoisonCudaAllocator();
  const at::Tensor y = SiluMul(wide.to(at::kCUDA, type).narrow(-1, 0, 2 * 1531));
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{3, 17, 1531}));
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, SiluMulReference(gate_up)), Tolerance(type));
}

INSTANTIATE_TEST_SUITE_P(Types, ElementwiseGpu, ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

// Training on the GPU: with autograd recording, both stay differentiable
// (the kernels have no backward) with the references' gradients.
TEST(ElementwiseGpuGrad, GradientsFlowWhileTraining) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(24);
  const at::Tensor x0 = at::randn({2, 3, 4, 16}), angle = at::rand({4, 16}) * 6;
  const at::Tensor g = at::randn({2, 3, 4, 16});
  at::Tensor x = x0.cuda().requires_grad_();
  Rotary(x, angle.cos().cuda(), angle.sin().cuda()).backward(g.cuda());
  at::Tensor xr = x0.clone().requires_grad_();
  RotaryReference(xr, angle.cos(), angle.sin()).backward(g);
  EXPECT_LT(testing::RelativeError(x.grad(), xr.grad()), 1e-5);

  const at::Tensor gu0 = at::randn({6, 32}), gy = at::randn({6, 16});
  at::Tensor gu = gu0.cuda().requires_grad_();
  SiluMul(gu).backward(gy.cuda());
  at::Tensor gur = gu0.clone().requires_grad_();
  SiluMulReference(gur).backward(gy);
  EXPECT_LT(testing::RelativeError(gu.grad(), gur.grad()), 1e-5);
}

}  // namespace
}  // namespace linearize::kernels
