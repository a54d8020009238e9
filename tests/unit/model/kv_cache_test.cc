#include "common/model/kv_cache.h"

#include <ATen/ATen.h>

#include "common/model/softmax_attention.h"
#include "gtest/gtest.h"

namespace linearize::model {
namespace {

TEST(KvCache, AppendsAndGrowsKeepingContents) {
  KvCache cache(/*batch=*/2, /*kv_heads=*/3, /*head_dim=*/4, /*capacity=*/0, at::kFloat);
  EXPECT_EQ(cache.capacity(), 0);
  EXPECT_EQ(cache.bytes(), 0);
  std::vector<at::Tensor> ks, vs;
  for (int step = 0; step < 40; ++step) {
    const int64_t t = step % 3 + 1;
    ks.push_back(at::randn({2, 3, t, 4}));
    vs.push_back(at::randn({2, 3, t, 4}));
    auto [k, v] = cache.Append(ks.back(), vs.back());
    EXPECT_TRUE(at::equal(k, at::cat(ks, 2)));
    EXPECT_TRUE(at::equal(v, at::cat(vs, 2)));
    EXPECT_GE(cache.capacity(), cache.length());
  }
  EXPECT_EQ(cache.length(), at::cat(ks, 2).size(2));
  // Doubling: 80 tokens need few reallocations, and capacity stays < 2x + 16.
  EXPECT_LT(cache.capacity(), 2 * cache.length() + 16);
  EXPECT_EQ(cache.bytes(), 2 * 2 * 3 * cache.capacity() * 4 * 4);
}

TEST(KvCache, PreallocatedCapacityIsKept) {
  KvCache cache(1, 2, 8, /*capacity=*/64, at::kFloat);
  EXPECT_EQ(cache.capacity(), 64);
  for (int i = 0; i < 64; ++i) cache.Append(at::randn({1, 2, 1, 8}), at::randn({1, 2, 1, 8}));
  EXPECT_EQ(cache.capacity(), 64);
  cache.Append(at::randn({1, 2, 1, 8}), at::randn({1, 2, 1, 8}));
  EXPECT_EQ(cache.capacity(), 128);
}

TEST(KvCache, CloneIsIndependent) {
  KvCache cache(1, 1, 2, 0, at::kFloat);
  cache.Append(at::ones({1, 1, 3, 2}), at::ones({1, 1, 3, 2}));
  std::unique_ptr<AttentionState> copy = cache.Clone();
  auto* fork = dynamic_cast<KvCache*>(copy.get());
  ASSERT_NE(fork, nullptr);
  fork->Append(at::zeros({1, 1, 1, 2}), at::zeros({1, 1, 1, 2}));
  cache.Append(at::full({1, 1, 1, 2}, 2.0), at::full({1, 1, 1, 2}, 2.0));
  EXPECT_EQ(fork->keys()[0][0][3][0].item<float>(), 0.0f);
  EXPECT_EQ(cache.keys()[0][0][3][0].item<float>(), 2.0f);
  EXPECT_EQ(fork->length(), 4);
}

TEST(KvCache, RejectsMismatchedShapes) {
  KvCache cache(1, 2, 4, 0, at::kFloat);
  EXPECT_THROW(cache.Append(at::randn({1, 3, 1, 4}), at::randn({1, 3, 1, 4})), c10::Error);
  EXPECT_THROW(cache.Append(at::randn({1, 2, 1, 4}), at::randn({1, 2, 2, 4})), c10::Error);
}

// Attention over a cache equals attention over the whole sequence, with and
// without a sliding window, for chunks of every size.
TEST(SoftmaxAttention, CachedChunksEqualFullSequence) {
  for (std::optional<int64_t> window : {std::optional<int64_t>(), std::optional<int64_t>(3)}) {
    SoftmaxAttention attn(/*num_heads=*/4, /*num_kv_heads=*/2, /*head_dim=*/8, window);
    const at::Tensor q = at::randn({1, 4, 10, 8});
    const at::Tensor k = at::randn({1, 2, 10, 8});
    const at::Tensor v = at::randn({1, 2, 10, 8});
    const at::Tensor full = attn.Forward(q, k, v, nullptr, 0);
    std::unique_ptr<AttentionState> state = attn.NewState(1, 0, at::kFloat);
    std::vector<at::Tensor> parts;
    int64_t pos = 0;
    for (int64_t t : {1, 4, 2, 3}) {
      parts.push_back(attn.Forward(q.slice(2, pos, pos + t), k.slice(2, pos, pos + t),
                                   v.slice(2, pos, pos + t), state.get(), pos));
      pos += t;
    }
    EXPECT_TRUE(at::allclose(at::cat(parts, 2), full, 1e-5, 1e-6));
  }
}

TEST(SoftmaxAttention, SlidingWindowMatchesExplicitMask) {
  SoftmaxAttention attn(2, 1, 4, /*sliding_window=*/2);
  const at::Tensor q = at::randn({1, 2, 5, 4});
  const at::Tensor k = at::randn({1, 1, 5, 4});
  const at::Tensor v = at::randn({1, 1, 5, 4});
  // Query i sees keys i-1 and i.
  const at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / 2.0;  // sqrt(4)
  const at::Tensor i = at::arange(5).unsqueeze(1);
  const at::Tensor j = at::arange(5).unsqueeze(0);
  const at::Tensor allowed = (j <= i) & (i - j < 2);
  const at::Tensor expected =
      at::matmul(at::softmax(scores.masked_fill(~allowed, -INFINITY), -1), v);
  EXPECT_TRUE(at::allclose(attn.Forward(q, k, v, nullptr, 0), expected, 1e-5, 1e-6));
}

TEST(SoftmaxAttention, RejectsAStateAtAnotherPosition) {
  SoftmaxAttention attn(2, 1, 4);
  std::unique_ptr<AttentionState> state = attn.NewState(1, 0, at::kFloat);
  const at::Tensor q = at::randn({1, 2, 1, 4});
  const at::Tensor kv = at::randn({1, 1, 1, 4});
  EXPECT_THROW(attn.Forward(q, kv, kv, state.get(), 5), c10::Error);
}

}  // namespace
}  // namespace linearize::model
