// The window forward's walks (a CTA taking several consecutive 64-query
// chunks, the previous chunk's keys and values kept in shared memory): every
// output of a walk of 2, 3, 16 chunks and of the planned walk equals, bit
// for bit, that of one chunk a CTA, which the hybrids' float64 tests check.
// Lengths with a partial last chunk and walks that do not divide the chunk
// count (a short last CTA), both users of the 128-key band (LoLCATs, Lizard
// at W <= 64), bf16, float32 and no linear terms, one short chunk, and a
// 32-head 8k sequence that the plan walks. Fresh random inputs; the
// outputs poisoned (NaN) before each launch.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/lolcats/lolcats_window_params.h"

namespace linearize::kernels {
namespace {

struct Case {
  const char* name;
  int64_t b, h, hk, t, d, window;
  bool lizard = false;
  bool lin_bf16 = true;
  bool lin_terms = true;  // else no linear part (null lin_num and lin_den)
};

at::Tensor Bf16(std::vector<int64_t> sizes) {
  return at::randn(sizes, at::TensorOptions().device(at::kCUDA)).to(at::kBFloat16);
}
at::Tensor Poisoned(std::vector<int64_t> sizes, at::ScalarType type) {
  return at::full(sizes, NAN, at::TensorOptions().device(at::kCUDA).dtype(type));
}

class WindowWalkGpu : public ::testing::TestWithParam<Case> {};

TEST_P(WindowWalkGpu, ForwardWalksEqualOneChunkACta) {
  const Case& c = GetParam();
  const at::Tensor q = Bf16({c.b, c.h, c.t, c.d}), k = Bf16({c.b, c.hk, c.t, c.d}),
                   v = Bf16({c.b, c.hk, c.t, c.d});
  const at::Tensor lin_num =
      c.lin_bf16 ? Bf16({c.b, c.h, c.t, c.d}) : at::randn({c.b, c.h, c.t, c.d}, at::kCUDA);
  const at::Tensor lin_den = at::rand({c.b, c.h, c.t}, at::kCUDA) * 4 + 0.5;
  const at::Tensor gate = at::rand({c.h}, at::kCUDA) * 0.8 + 0.1;
  const at::Tensor sinks = at::randn({c.h, 3}, at::kCUDA);
  const at::Tensor alpha = at::rand({c.h}, at::kCUDA) + 0.5;

  LolcatsWindowParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  if (c.lizard) {
    p.sinks = sinks.data_ptr<float>();
    p.sink_count = sinks.size(1);
    p.alpha = alpha.data_ptr<float>();
    p.eps = 1e-3f;
  } else {
    p.gate = gate.data_ptr<float>();
  }
  if (c.lin_terms) {
    p.lin_num = lin_num.data_ptr();
    p.lin_num_bf16 = c.lin_bf16;
    p.lin_den = lin_den.data_ptr<float>();
  }
  p.batch = c.b;
  p.heads = c.h;
  p.kv_heads = c.hk;
  p.length = c.t;
  p.head_dim = c.d;
  p.window = c.window;
  p.scale = 1.f / std::sqrt(static_cast<float>(c.d));
  p.stream = at::cuda::getCurrentCUDAStream().stream();

  // y, and row_den (LoLCATs) or y_window (Lizard), of one launch.
  const auto run = [&](int64_t chunks_per_cta) {
    at::Tensor y = Poisoned({c.b, c.h, c.t, c.d}, at::kBFloat16);
    at::Tensor side = c.lizard ? Poisoned({c.b, c.h, c.t, c.d}, at::kBFloat16)
                               : Poisoned({c.b, c.h, c.t}, at::kFloat);
    LolcatsWindowParams run_p = p;
    run_p.y = y.data_ptr();
    if (c.lizard) {
      run_p.y_window = side.data_ptr();
    } else {
      run_p.row_den = side.data_ptr<float>();
    }
    run_p.chunks_per_cta = chunks_per_cta;
    const char* err = LaunchLolcatsWindow(run_p);
    EXPECT_EQ(err, nullptr) << err;
    return std::vector<at::Tensor>{y, side};
  };
  const std::vector<at::Tensor> one = run(1);
  ASSERT_TRUE(at::isfinite(one[0]).all().item<bool>());
  ASSERT_TRUE(at::isfinite(one[1]).all().item<bool>());
  for (const int64_t walk : {2, 3, 16, 0}) {
    const std::vector<at::Tensor> walked = run(walk);
    EXPECT_TRUE(at::equal(walked[0], one[0])) << "y, walk " << walk;
    EXPECT_TRUE(at::equal(walked[1], one[1]))
        << (c.lizard ? "y_window" : "row_den") << ", walk " << walk;
  }
}

TEST(WindowWalkGpuArgs, NegativeWalkIsRefused) {
  LolcatsWindowParams p;
  p.batch = p.heads = p.kv_heads = 1;
  p.length = 64;
  p.head_dim = 64;
  p.chunks_per_cta = -1;
  EXPECT_FALSE(LolcatsWindowSizesSupported(p, /*lizard=*/false));
  p.chunks_per_cta = 0;
  EXPECT_TRUE(LolcatsWindowSizesSupported(p, /*lizard=*/false));
}

const Case kCases[] = {
    {"T1000_D128_W64", 1, 4, 2, 1000, 128, 64},
    {"T1000_D64_W16_B2", 2, 2, 1, 1000, 64, 16},
    {"T130_D128_W64_three_chunks", 1, 2, 2, 130, 128, 64},
    {"T1000_D128_W64_float_terms", 1, 2, 1, 1000, 128, 64, false, false},
    {"T1000_D128_W48_lizard", 1, 4, 4, 1000, 128, 48, true},
    {"T700_D64_W64_lizard_float_terms", 2, 2, 2, 700, 64, 64, true, false},
    {"T640_D128_W64_no_linear_terms", 1, 2, 2, 640, 128, 64, false, true, false},
    {"T40_D64_W32_one_partial_chunk", 1, 2, 1, 40, 64, 32},
    // Enough chunks that the planned walk (0) walks too (16 on an H100).
    {"T8192_H32_D128_W64_planned_walks", 1, 32, 8, 8192, 128, 64},
};

INSTANTIATE_TEST_SUITE_P(Cases, WindowWalkGpu, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace linearize::kernels
