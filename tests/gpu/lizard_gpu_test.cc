// Lizard's gated branch on the chunked CUDA kernel (float32 features, split
// bf16 mma) and its window branch on the hybrids' window kernel (windows of
// 16, 64 and 128 keys, 4 sinks), through ForwardParallel and Prefill, against
// ForwardReference / the CPU Prefill in float64, with mild and strong (down
// to -inf) gates; and
// the batched decode kernels: DecodeStep with rows at different positions
// (states of two prompt lengths joined along the batch, the window branch
// with its own q/k) against the float64 CPU DecodeStep.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <tuple>
#include <vector>

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
  int64_t window;
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
  Inputs gpu{OnGpu(cpu.q, dtype),
             OnGpu(cpu.k, dtype),
             OnGpu(cpu.v, dtype),
             cpu.log_gamma.to(at::kFloat).cuda(),
             {},
             {}};
  Weights gw{testing::MapsOnGpu(w.maps, dtype), w.meta_logits.to(at::kFloat).cuda(),
             w.alpha.to(at::kFloat).cuda()};
  Options o;
  o.window = c.window;
  const double tol = testing::Tol(dtype);
  const at::Tensor ref_y = ForwardReference(cpu, w, o);
  testing::PoisonCudaAllocator();
  {
    const testing::LaunchCounter launches;
    const at::Tensor y = ForwardParallel(gpu, gw, o);
    // Where the window kernel takes the window (bf16 up to 128 keys, float32
    // up to 64): the chunked kernel (bf16: maps fused; float32: two feature
    // map launches before it) and the window kernel. Else the two maps and
    // the chunked kernel, and the window branch in LibTorch.
    const bool bf16 = dtype == at::kBFloat16;
    const bool window_kernel = c.window <= (bf16 ? 128 : 64);
    EXPECT_EQ(launches.Launches(), !window_kernel ? 3 : bf16 ? 2 : 4)
        << "the CUDA kernels did not all run";
    ASSERT_TRUE(testing::AllFinite(y));
    EXPECT_LT(RelativeError(y, ref_y), tol) << "ForwardParallel";
  }
  const PrefillResult ref = Prefill(cpu, w, o);
  testing::PoisonCudaAllocator();
  const PrefillResult g = Prefill(gpu, gw, o);
  EXPECT_LT(RelativeError(g.y, ref.y), tol) << "Prefill y";
  EXPECT_LT(RelativeError(g.state.kv, ref.state.kv), tol) << "Prefill kv";
  EXPECT_LT(RelativeError(g.state.k_sum, ref.state.k_sum), tol) << "Prefill k_sum";
}

// Random log gates for [B, H, T]: mild, or with strong ones (-30 and -inf) mixed in.
at::Tensor RandomLogGamma(int64_t b, int64_t h, int64_t t, bool strong) {
  at::Tensor lg = at::log_sigmoid(at::randn({b, h, t}, at::kDouble) + 2.0);
  if (strong) {
    const at::Tensor pos = at::arange(t, at::kLong).view({1, 1, t}).expand_as(lg);
    lg = at::where(pos.remainder(7) == 3, at::full({}, -30.0, at::kDouble), lg);
    lg = at::where(pos.remainder(50) == 20,
                   at::full({}, -std::numeric_limits<double>::infinity(), at::kDouble), lg);
  }
  return lg;
}

// A prompt in two Prefill calls, the second continuing the first's state: on
// the kernels where the window kernel takes the window (bf16 up to 128 keys,
// float32 up to 64), and equal to the float64 CPU Prefill of the whole
// prompt, y and state.
TEST_P(LizardGpu, PrefillContinuesAState) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  if (c.t < 2) GTEST_SKIP() << "one token cannot be split";
  at::manual_seed(606 + c.t + c.d);
  Inputs cpu;
  cpu.q = Seen(at::randn({c.b, c.hq, c.t, c.d}, at::kDouble), dtype);
  cpu.k = Seen(at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble), dtype);
  cpu.v = Seen(at::randn({c.b, c.hkv, c.t, c.d}, at::kDouble), dtype);
  cpu.log_gamma = RandomLogGamma(c.b, c.hkv, c.t, c.strong);
  Weights w;
  w.maps = testing::MapsSeen(testing::RandomHedgehog(c.hq, c.hq, c.d, c.fh), dtype);
  w.meta_logits = at::randn({c.hq, 4}, at::kDouble);
  w.alpha = at::randn({c.hq}, at::kDouble);
  const Weights gw{testing::MapsOnGpu(w.maps, dtype), w.meta_logits.to(at::kFloat).cuda(),
                   w.alpha.to(at::kFloat).cuda()};
  Options o;
  o.window = c.window;
  const double tol = testing::Tol(dtype);
  const PrefillResult ref = Prefill(cpu, w, o);
  testing::PoisonCudaAllocator();
  const int64_t first = std::max<int64_t>(1, c.t / 3), rest = c.t - first;
  const auto part = [&](int64_t from, int64_t len) {
    const auto seq = [&](const at::Tensor& x) { return OnGpu(x, dtype).narrow(2, from, len); };
    return Inputs{seq(cpu.q), seq(cpu.k), seq(cpu.v),
                  cpu.log_gamma.to(at::kFloat).cuda().narrow(2, from, len), {}, {}};
  };
  const PrefillResult a = Prefill(part(0, first), gw, o);
  const testing::LaunchCounter launches;
  const PrefillResult b = Prefill(part(first, rest), gw, o, &a.state);
  // The chunked kernel from the state and the window kernel; none where the
  // window kernel does not take the window (the LibTorch Continue).
  EXPECT_EQ(launches.AttentionLaunches(), c.window <= (dtype == at::kBFloat16 ? 128 : 64) ? 2 : 0)
      << "the continuing prefill's path";
  ASSERT_TRUE(testing::AllFinite(b.y));
  EXPECT_LT(RelativeError(at::cat({a.y, b.y}, 2), ref.y), tol) << "continued Prefill y";
  EXPECT_LT(RelativeError(b.state.kv, ref.state.kv), tol) << "kv";
  EXPECT_LT(RelativeError(b.state.k_sum, ref.state.k_sum), tol) << "k_sum";
  EXPECT_LT(RelativeError(b.state.k_window, ref.state.k_window), tol) << "k_window";
  EXPECT_LT(RelativeError(b.state.v_window, ref.state.v_window), tol) << "v_window";
  EXPECT_TRUE(at::equal(b.state.position.cpu(), ref.state.position)) << "position";
}

State Join(const State& a, const State& b) {
  return State{at::cat({a.kv, b.kv}), at::cat({a.k_sum, b.k_sum}),
               at::cat({a.k_window, b.k_window}), at::cat({a.v_window, b.v_window}),
               at::cat({a.position, b.position})};
}

TEST_P(LizardGpu, DecodeRowsAtDifferentPositions) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(505 + c.t + c.d);
  const int64_t steps = 3;
  const int64_t lens[2] = {c.t, std::max<int64_t>(1, c.t / 3)};
  // One sequence per row: prompt then `steps` decode tokens.
  std::vector<Inputs> seqs;
  for (const int64_t len : lens) {
    const int64_t n = len + steps;
    seqs.push_back(Inputs{
        at::randn({1, c.hq, n, c.d}, at::kDouble), at::randn({1, c.hkv, n, c.d}, at::kDouble),
        at::randn({1, c.hkv, n, c.d}, at::kDouble), RandomLogGamma(1, c.hkv, n, c.strong),
        at::randn({1, c.hq, n, c.d}, at::kDouble), at::randn({1, c.hkv, n, c.d}, at::kDouble)});
  }
  Weights w;
  w.maps = testing::RandomHedgehog(c.hq, c.hq, c.d, c.fh);
  w.meta_logits = at::randn({c.hq, 4}, at::kDouble);
  w.alpha = at::randn({c.hq}, at::kDouble);
  const Weights rw{testing::MapsSeen(w.maps, dtype), w.meta_logits, w.alpha};
  const Weights gw{testing::MapsOnGpu(w.maps, dtype), w.meta_logits.to(at::kFloat).cuda(),
                   w.alpha.to(at::kFloat).cuda()};
  Options o;
  o.window = 16;  // small, so the prompts wrap the ring
  // Positions [from, from + n) of row r's sequence, on the CPU (float64
  // after rounding to dtype) or on the GPU.
  const auto slice = [&](bool gpu, int r, int64_t from, int64_t n) {
    const Inputs& seq = seqs[static_cast<size_t>(r)];
    const auto cut = [&](const at::Tensor& t) {
      const at::Tensor piece = t.narrow(2, from, n);
      return gpu ? OnGpu(piece, dtype) : Seen(piece, dtype);
    };
    const at::Tensor lg = seq.log_gamma.narrow(2, from, n);
    return Inputs{cut(seq.q),        cut(seq.k),
                  cut(seq.v),        gpu ? lg.to(at::kFloat).cuda() : lg,
                  cut(seq.q_window), cut(seq.k_window)};
  };
  // Both rows' token at their own position (prompt length + step).
  const auto token = [&](bool gpu, int64_t step) {
    const Inputs a = slice(gpu, 0, lens[0] + step, 1), b = slice(gpu, 1, lens[1] + step, 1);
    return Inputs{at::cat({a.q, b.q}),
                  at::cat({a.k, b.k}),
                  at::cat({a.v, b.v}),
                  at::cat({a.log_gamma, b.log_gamma}),
                  at::cat({a.q_window, b.q_window}),
                  at::cat({a.k_window, b.k_window})};
  };
  State ref = Join(Prefill(slice(false, 0, 0, lens[0]), rw, o).state,
                   Prefill(slice(false, 1, 0, lens[1]), rw, o).state);
  State gpu = Join(Prefill(slice(true, 0, 0, lens[0]), gw, o).state,
                   Prefill(slice(true, 1, 0, lens[1]), gw, o).state);
  const double tol = testing::Tol(dtype);
  for (int64_t s = 0; s < steps; ++s) {
    const at::Tensor ry = DecodeStep(ref, token(false, s), rw, o);
    testing::PoisonCudaAllocator();
    const testing::LaunchCounter launches;
    const at::Tensor gy = DecodeStep(gpu, token(true, s), gw, o);
    EXPECT_EQ(launches.Launches(), 1) << "the decode kernels did not run";
    ASSERT_TRUE(testing::AllFinite(gy));
    EXPECT_LT(RelativeError(gy, ry), tol) << "DecodeStep " << s;
  }
  EXPECT_LT(RelativeError(gpu.kv, ref.kv), tol) << "kv";
  EXPECT_LT(RelativeError(gpu.k_sum, ref.k_sum), tol) << "k_sum";
  EXPECT_LT(RelativeError(gpu.k_window, ref.k_window), tol) << "k_window";
  EXPECT_LT(RelativeError(gpu.v_window, ref.v_window), tol) << "v_window";
  EXPECT_TRUE(at::equal(gpu.position.cpu(), ref.position)) << "position";
}

const Case kCases[] = {
    {"T1", 1, 2, 2, 1, 64, 32, false, 128},
    {"T100_B2_gqa_W16", 2, 4, 2, 100, 64, 64, false, 16},
    {"T300_strong", 2, 2, 1, 300, 128, 64, true, 128},
    {"T200_W64", 1, 2, 2, 200, 128, 64, false, 64},
    {"T260_D128_W72_gqa", 1, 4, 2, 260, 128, 64, false, 72},  // an odd first window tile
    {"T200_D64_W65", 1, 2, 2, 200, 64, 32, false, 65},  // the 128-query chunks' first pair
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
