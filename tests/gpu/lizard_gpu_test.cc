// Lizard's gated branch on the chunked CUDA kernel (float32 features, split
// bf16 mma), through ForwardParallel and Prefill, against ForwardReference /
// the CPU Prefill in float64, with mild and strong (down to -inf) gates.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <tuple>

#include "kernels/lizard/lizard_attention.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels::lizard {
namespace {

using testing::OnGpu;
using testing::RelativeError;
using testing::Seen;

struct Case {
  const char* name;
  int64_t b, hq, hkv, t, d, fh;
  bool strong;
};

class LizardGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

TEST_P(LizardGpu, ForwardAndPrefillMatchFloat64) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(404 + c.t + c.d);
  Inputs cpu;
  cpu.q = Seen(at::randn({c.b, c.hq, c.t, c.d}, at::kDouble), dtype);
  cpu.k = Seen(at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble), dtype);
  cpu.v = Seen(at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble), dtype);
  at::Tensor lg = at::log_sigmoid(at::randn({c.b, c.hkv, c.t}, at::kDouble) + 2.0);
  if (c.strong) {
    const at::Tensor pos = at::arange(c.t, at::kLong).view({1, 1, c.t}).expand_as(lg);
    lg = at::where(pos.remainder(7) == 3, at::full({}, -30.0, at::kDouble), lg);
    lg = at::where(pos.remainder(50) == 20,
                   at::full({}, -std::numeric_limits<double>::infinity(), at::kDouble), lg);
  }
  cpu.log_gamma = lg;
  Weights w;
  w.maps = testing::MapsSeen(testing::RandomHedgehog(c.hq, c.hq, c.d, c.fh), dtype);
  w.meta_logits = at::randn({c.hq, 4}, at::kDouble);
  w.alpha = at::randn({c.hq}, at::kDouble);
  Inputs gpu{OnGpu(cpu.q, dtype), OnGpu(cpu.k, dtype), OnGpu(cpu.v, dtype),
             cpu.log_gamma.to(at::kFloat).cuda(), {}, {}};
  Weights gw{testing::MapsOnGpu(w.maps, dtype), w.meta_logits.to(at::kFloat).cuda(),
             w.alpha.to(at::kFloat).cuda()};
  const double tol = testing::Tol(dtype);
  const at::Tensor ref_y = ForwardReference(cpu, w);
  testing::PoisonCudaAllocator();
  {
    const testing::LaunchCounter launches;
    const at::Tensor y = ForwardParallel(gpu, gw);
    // Two feature maps and the chunked kernel (the window branch is LibTorch).
    EXPECT_EQ(launches.Launches(), 3) << "the CUDA kernels did not all run";
    ASSERT_TRUE(testing::AllFinite(y));
    EXPECT_LT(RelativeError(y, ref_y), tol) << "ForwardParallel";
  }
  const PrefillResult ref = Prefill(cpu, w);
  testing::PoisonCudaAllocator();
  const PrefillResult g = Prefill(gpu, gw);
  EXPECT_LT(RelativeError(g.y, ref.y), tol) << "Prefill y";
  EXPECT_LT(RelativeError(g.state.kv, ref.state.kv), tol) << "Prefill kv";
  EXPECT_LT(RelativeError(g.state.k_sum, ref.state.k_sum), tol) << "Prefill k_sum";
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 1, 64, 32, false},
    {"T100_B2_gqa", 2, 4, 2, 100, 64, 64, false},
    {"T300_strong", 2, 2, 1, 300, 128, 64, true},
};

INSTANTIATE_TEST_SUITE_P(
    Shapes, LizardGpu,
    ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             testing::DtypeName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace linearize::kernels::lizard
