// The small-batch Linear kernel against LibTorch in float64 on the CPU, on
// fresh random inputs with poisoned output memory: 1-4 rows, K that leaves a
// remainder after the unrolled loop, bias, residual in place, rows of x taken
// from a wider tensor, the folded RMSNorm and SwiGLU gate; and the fallbacks
// beyond 4 rows and for K the kernel cannot load in 16-byte pieces.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <tuple>

#include "kernels/gemv/gemv.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/swiglu/swiglu.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::kernels {
namespace {

double Tolerance(at::ScalarType type) { return type == at::kFloat ? 1e-5 : 1e-2; }

// (element type, rows)
class GemvGpu : public ::testing::TestWithParam<std::tuple<at::ScalarType, int64_t>> {};

TEST_P(GemvGpu, LinearWithBiasMatchesReference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [type, rows] = GetParam();
  at::manual_seed(41 + rows);
  // K = 2056: 8 unrolled passes of 256 bf16 and a remainder; N not a multiple of 8.
  const at::Tensor x = at::randn({rows, 1, 2056}), w = at::randn({301, 2056}) * 0.05;
  const at::Tensor bias = at::randn({301});
  const at::Tensor want = at::linear(x.to(type).to(at::kDouble), w.to(type).to(at::kDouble),
                                     bias.to(type).to(at::kDouble));
  testing::PoisonCudaAllocator();
  const at::Tensor y =
      Linear(x.to(at::kCUDA, type), w.to(at::kCUDA, type), bias.to(at::kCUDA, type));
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, 1, 301}));
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, want), Tolerance(type));
}

TEST_P(GemvGpu, AddLinearAccumulatesInPlace) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [type, rows] = GetParam();
  at::manual_seed(51 + rows);
  // x: the first 1000 columns of wider rows (row stride 1040, 16-byte aligned).
  const at::Tensor wide = at::randn({rows, 1040});
  const at::Tensor w = at::randn({77, 1000}) * 0.05, residual = at::randn({rows, 77});
  const at::Tensor want =
      residual.to(type).to(at::kDouble) +
      at::linear(wide.narrow(1, 0, 1000).to(type).to(at::kDouble), w.to(type).to(at::kDouble));
  testing::PoisonCudaAllocator();
  const at::Tensor wide_gpu = wide.to(at::kCUDA, type);
  const at::Tensor y = residual.to(at::kCUDA, type);
  const void* storage = y.data_ptr();
  AddLinear(y, wide_gpu.narrow(1, 0, 1000), w.to(at::kCUDA, type));
  EXPECT_EQ(y.data_ptr(), storage);
  EXPECT_LT(testing::RelativeError(y, want), Tolerance(type));
}

// The input norm folded into a product with bias (Qwen2's q/k/v), and into
// the MLP's gate/up product with the SwiGLU gate, against the unfused
// references (RMSNorm rounds to the element type before the product: the
// bf16 tolerance covers it).
TEST_P(GemvGpu, NormLinearMatchesNormThenLinear) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [type, rows] = GetParam();
  at::manual_seed(71 + rows);
  const at::Tensor x = at::randn({1, rows, 1032}) * 3, g = at::rand({1032}) + 0.5;
  const at::Tensor w = at::randn({90, 1032}) * 0.05, bias = at::randn({90});
  const auto d = [&](const at::Tensor& t) { return t.to(type).to(at::kDouble); };
  const at::Tensor want = at::linear(RmsNormReference(d(x), d(g), 1e-5), d(w), d(bias));
  testing::PoisonCudaAllocator();
  const auto c = [&](const at::Tensor& t) { return t.to(at::kCUDA, type); };
  const at::Tensor y = NormLinear(c(x), c(g), 1e-5, c(w), c(bias));
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{1, rows, 90}));
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, want), Tolerance(type));
}

TEST_P(GemvGpu, NormGateUpMatchesNormLinearSiluMul) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [type, rows] = GetParam();
  at::manual_seed(81 + rows);
  // K = 2056 leaves a remainder after the unrolled loop; I = 150.
  const at::Tensor x = at::randn({rows, 1, 2056}) * 3, g = at::rand({2056}) + 0.5;
  const at::Tensor gate_up = at::randn({300, 2056}) * 0.05;
  const auto d = [&](const at::Tensor& t) { return t.to(type).to(at::kDouble); };
  const at::Tensor want =
      SiluMulReference(at::linear(RmsNormReference(d(x), d(g), 1e-6), d(gate_up)));
  testing::PoisonCudaAllocator();
  const auto c = [&](const at::Tensor& t) { return t.to(at::kCUDA, type); };
  const at::Tensor y = NormGateUp(c(x), c(g), 1e-6, c(gate_up));
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{rows, 1, 150}));
  ASSERT_FALSE(y.isnan().any().item<bool>());
  EXPECT_LT(testing::RelativeError(y, want), Tolerance(type));
}

INSTANTIATE_TEST_SUITE_P(TypesAndRows, GemvGpu,
                         ::testing::Combine(::testing::Values(at::kFloat, at::kHalf, at::kBFloat16),
                                            ::testing::Values(1, 2, 3, 4)));

// Beyond 4 rows the fused forms fall back to RmsNorm, Linear and SiluMul.
TEST(GemvGpuFallback, NormGateUpWithManyRowsStillRight) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(62);
  const at::Tensor x = at::randn({7, 256}), g = at::rand({256}) + 0.5;
  const at::Tensor gate_up = at::randn({64, 256}) * 0.1;
  const at::Tensor want = SiluMulReference(at::linear(
      RmsNormReference(x.to(at::kDouble), g.to(at::kDouble), 1e-6), gate_up.to(at::kDouble)));
  const at::Tensor y = NormGateUp(x.to(at::kCUDA), g.to(at::kCUDA), 1e-6, gate_up.to(at::kCUDA));
  EXPECT_LT(testing::RelativeError(y, want), 1e-2);
}

// More rows than the kernel takes, and K = 13 (not 16-byte rows): cuBLAS
// runs and the results are still right.
TEST(GemvGpuFallback, ManyRowsAndOddKStillRight) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(61);
  for (const auto& [rows, k] : {std::pair<int64_t, int64_t>{9, 256}, {1, 13}}) {
    const at::Tensor x = at::randn({rows, k}), w = at::randn({40, k});
    const at::Tensor y = Linear(x.to(at::kCUDA), w.to(at::kCUDA));
    EXPECT_LT(testing::RelativeError(y, at::linear(x.to(at::kDouble), w.to(at::kDouble))), 1e-2)
        << rows << " rows, K = " << k;
  }
}

}  // namespace
}  // namespace linearize::kernels
