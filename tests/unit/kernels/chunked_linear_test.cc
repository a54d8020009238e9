// The chunked form's internals shared by the CPU and CUDA paths: mixed
// dtypes in the LibTorch form (float32 gates beside bfloat16 features, as the
// Lizard branch passes them under autocast), and how the two-pass CUDA
// kernels cut sequences into blocks and how long the window kernels' walks
// are (host arithmetic, no GPU needed).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/linear_attention/attention_common.h"
#include "kernels/linear_attention/chunk_plan.h"
#include "kernels/linear_attention/chunked_linear.h"

namespace linearize::kernels {
namespace {

TEST(ChunkedLinear, Float32GatesBesideBfloat16Features) {
  at::manual_seed(3);
  const at::Tensor q = (at::rand({2, 3, 150, 16}, at::kDouble) + 0.1).to(at::kBFloat16);
  const at::Tensor k = (at::rand({2, 3, 150, 16}, at::kDouble) + 0.1).to(at::kBFloat16);
  const at::Tensor v = at::randn({2, 3, 150, 8}, at::kDouble).to(at::kBFloat16);
  const at::Tensor g = -at::rand({2, 3, 150}, at::kFloat);
  const detail::LinearTerms got = detail::ChunkedCausalLinear(q, k, v, g, 64);
  const detail::LinearTerms ref = detail::ChunkedCausalLinear(
      q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble), g.to(at::kDouble), 64);
  EXPECT_EQ(got.num.scalar_type(), at::kBFloat16);
  const auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a.to(at::kDouble) - b).abs().max() / b.abs().max()).item<double>();
  };
  EXPECT_LT(rel(got.num, ref.num), 2e-2);
  EXPECT_LT(rel(got.den, ref.den), 2e-2);
  EXPECT_LT(rel(got.kv, ref.kv), 2e-2);
}

// Gradients per query head become per kv head by the adjoint of the
// expansion: <Expand(x), y> = <x, Sum(y)>, for 3-d (gates) and 4-d tensors.
TEST(KvHeads, SumIsTheAdjointOfExpand) {
  at::manual_seed(5);
  for (const std::vector<int64_t>& kv_shape :
       {std::vector<int64_t>{2, 3, 7}, std::vector<int64_t>{2, 2, 5, 4}}) {
    const at::Tensor x = at::randn(kv_shape, at::kDouble);
    const at::Tensor ex = detail::ExpandKvHeads(x, 4 * kv_shape[1]);
    const at::Tensor y = at::randn(ex.sizes(), at::kDouble);
    const at::Tensor sy = detail::SumToKvHeads(y, kv_shape[1]);
    EXPECT_EQ(sy.sizes(), x.sizes());
    EXPECT_NEAR((ex * y).sum().item<double>(), (x * sy).sum().item<double>(), 1e-10);
  }
  const at::Tensor same = at::randn({1, 3, 2});
  EXPECT_TRUE(detail::SumToKvHeads(same, 3).equal(same));
}

TEST(ChunkPlan, OneBlockWhenTheSequencesFillTheDevice) {
  EXPECT_EQ(PlanBlockChunks(/*chunks=*/512, /*bh=*/264, /*slots=*/132), 512);
  EXPECT_EQ(PlanBlockChunks(1, 1, 132), 1);
}

// Pass 1 at two CTAs per SM (its own, smaller layout) makes its blocks
// cheaper, so 32 sequences of 512 chunks are cut into more, shorter blocks.
TEST(ChunkPlan, MoreSlotsForPassOneCutShorterBlocks) {
  const int64_t same = PlanBlockChunks(512, 32, 132);
  const int64_t twice = PlanBlockChunks(512, 32, 132, 264);
  EXPECT_EQ(same, PlanBlockChunks(512, 32, 132, 132));
  EXPECT_LT(twice, same);
  EXPECT_LE(32 * ((512 + twice - 1) / twice), 2 * 132) << "pass 2 in at most two waves";
}

TEST(ChunkPlan, FewLongSequencesAreCutIntoBlocksThatCoverThem) {
  for (const int64_t chunks : {2, 7, 64, 512, 513}) {
    for (const int64_t bh : {1, 8, 32}) {
      const int64_t l = PlanBlockChunks(chunks, bh, 132);
      const int64_t blocks = (chunks + l - 1) / l;
      EXPECT_GE(l, 1);
      EXPECT_LE(l, chunks);
      EXPECT_GE(blocks * l, chunks);
      // 32 sequences of 512 chunks on 132 slots: more than one block each,
      // and no more CTAs in pass 2 than a few waves.
      if (chunks == 512 && bh == 32) {
        EXPECT_GT(blocks, 1);
        EXPECT_LE(bh * blocks, 4 * 132);
      }
    }
  }
}

// The window kernels' walks: long sequences on a full device get long walks
// (fewer, cheaper chunks per row of L2 traffic), few short ones stay at one
// chunk a CTA so that they still spread over the SMs.
TEST(WalkPlan, LongSequencesWalkAndShortOnesSpread) {
  const int64_t long_walk = PlanWalkChunks(/*chunks=*/512, /*bh=*/32, /*slots=*/264);
  EXPECT_GE(long_walk, 8);
  EXPECT_LE(long_walk, 16);
  EXPECT_EQ(PlanWalkChunks(/*chunks=*/5, /*bh=*/8, /*slots=*/264), 1);
  EXPECT_EQ(PlanWalkChunks(1, 1, 264), 1);
  for (const int64_t chunks : {1, 2, 7, 33, 512}) {
    for (const int64_t bh : {1, 64, 1024}) {
      const int64_t l = PlanWalkChunks(chunks, bh, 264);
      EXPECT_GE(l, 1);
      EXPECT_LE(l, std::max<int64_t>(1, std::min<int64_t>(16, chunks)));
    }
  }
}

}  // namespace
}  // namespace linearize::kernels
