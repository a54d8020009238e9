// The wgmma helpers (kernels/linear_attention/wgmma.cuh) through a probe
// kernel (wgmma_probe.h): C = A B with A K-major, M-major or in registers
// and B K-major or MN-major, for N and K of 64 and 128 (one and two swizzle
// slabs), against the float64 product of the same bf16 values. Fresh random
// inputs, the output poisoned first.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <tuple>

#include "tests/gpu/attention_gpu_util.h"
#include "tests/gpu/wgmma_probe.h"

namespace linearize::testing {
namespace {

using Param = std::tuple<int, int, WgmmaA, bool>;
class WgmmaGpu : public ::testing::TestWithParam<Param> {};

const char* AName(WgmmaA a) {
  switch (a) {
    case WgmmaA::kKMajor:
      return "a_k_major";
    case WgmmaA::kMMajor:
      return "a_m_major";
    case WgmmaA::kRegisters:
      return "a_registers";
  }
  return "?";
}

TEST_P(WgmmaGpu, MatchesFloat64Product) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [n, k, a_mode, mn_major] = GetParam();
  at::manual_seed(71 + n + k + 2 * static_cast<int>(a_mode) + mn_major);
  const at::Tensor a = at::randn({64, k}, at::kDouble).to(at::kBFloat16);
  const at::Tensor a_stored = a_mode == WgmmaA::kMMajor ? a.t().contiguous() : a;
  // B [K][N] as the product uses it; stored [N][K] for a K-major B.
  const at::Tensor b = at::randn({k, n}, at::kDouble).to(at::kBFloat16);
  const at::Tensor b_stored = mn_major ? b.contiguous() : b.t().contiguous();
  const at::Tensor ref = at::matmul(a.to(at::kDouble), b.to(at::kDouble));
  const at::Tensor ga = a_stored.cuda(), gb = b_stored.cuda();
  const at::Tensor c = at::full({64, n}, std::numeric_limits<float>::quiet_NaN(),
                                at::TensorOptions().device(at::kCUDA).dtype(at::kFloat));
  const char* err =
      LaunchWgmmaProbe(n, k, a_mode, mn_major, ga.data_ptr(), gb.data_ptr(), c.data_ptr<float>(),
                       at::cuda::getCurrentCUDAStream().stream());
  ASSERT_EQ(err, nullptr) << err;
  const at::Tensor got = c.cpu().to(at::kDouble);
  ASSERT_TRUE(AllFinite(got)) << "unwritten (NaN-poisoned) outputs";
  // float32 accumulation of exact bf16 products.
  EXPECT_LT(RelativeError(got, ref), 1e-5);
  if (RelativeError(got, ref) >= 1e-5) {  // where it goes wrong, for the descriptors
    const at::Tensor bad = (got - ref).abs() > 1e-3 * ref.abs().max();
    const at::Tensor where = bad.nonzero();
    std::printf("%lld of %lld wrong; first at (row, col):", static_cast<long long>(where.size(0)),
                static_cast<long long>(got.numel()));
    for (int64_t i = 0; i < std::min<int64_t>(8, where.size(0)); ++i) {
      std::printf(" (%lld, %lld)", static_cast<long long>(where[i][0].item<int64_t>()),
                  static_cast<long long>(where[i][1].item<int64_t>()));
    }
    std::printf("\n");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, WgmmaGpu,
                         ::testing::Combine(::testing::Values(64, 128), ::testing::Values(64, 128),
                                            ::testing::Values(WgmmaA::kKMajor, WgmmaA::kMMajor,
                                                              WgmmaA::kRegisters),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return "N" + std::to_string(std::get<0>(info.param)) + "_K" +
                                  std::to_string(std::get<1>(info.param)) + "_" +
                                  AName(std::get<2>(info.param)) +
                                  (std::get<3>(info.param) ? "_b_mn_major" : "_b_k_major");
                         });

}  // namespace
}  // namespace linearize::testing
