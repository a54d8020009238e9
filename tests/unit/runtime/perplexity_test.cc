#include "common/runtime/perplexity.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "common/model/load.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::runtime {
namespace {

// Float32 logits of a slice and of the whole window differ in the last bits;
// sums of log-probabilities agree to ~1e-8 relative.
class PerplexityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(testing::ModelDir("mistral"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = *std::move(loaded);
    const testing::Reference ref = testing::ReadReference("mistral");
    ids64_ = ref.input_ids;
    ids_.assign(ids64_.begin(), ids64_.end());
  }
  // Sum of -log p(ids[j] | ids[begin..j-1]) for targets j in [first, end),
  // from one forward over ids[begin, end).
  double WindowNll(int64_t begin, int64_t end, int64_t first) {
    std::vector<int64_t> slice(ids64_.begin() + begin, ids64_.begin() + end);
    absl::StatusOr<at::Tensor> logits = loaded_.model->Forward(testing::Ids(slice));
    EXPECT_TRUE(logits.ok()) << logits.status();
    const at::Tensor logp = at::log_softmax(logits->to(at::kDouble)[0], -1);
    double nll = 0;
    for (int64_t j = first; j < end; ++j) nll -= logp[j - 1 - begin][ids64_[j]].item<double>();
    return nll;
  }
  model::LoadedModel loaded_;
  std::vector<int64_t> ids64_;
  std::vector<int32_t> ids_;
};

TEST_F(PerplexityTest, OneWindowIsTheMeanNll) {
  absl::StatusOr<PerplexityResult> r = Perplexity(*loaded_.model, ids_);
  ASSERT_TRUE(r.ok()) << r.status();
  const int64_t n = static_cast<int64_t>(ids_.size());
  EXPECT_EQ(r->tokens_scored, n - 1);
  const double nll = WindowNll(0, n, 1);
  EXPECT_NEAR(r->nll_sum, nll, 1e-6 * std::abs(nll));
  EXPECT_NEAR(r->perplexity, std::exp(nll / (n - 1)), 1e-6 * r->perplexity);
}

// 12 tokens, window 5, stride 2: windows [0,5) scoring 1-4, then [2,7) 5-6,
// [4,9) 7-8, [6,11) 9-10, [7,12) 11.
TEST_F(PerplexityTest, SlidingWindowsScoreEachTokenOnce) {
  ASSERT_EQ(ids_.size(), 12u);
  absl::StatusOr<PerplexityResult> r = Perplexity(*loaded_.model, ids_, {5, 2});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tokens_scored, 11);
  const double expected = WindowNll(0, 5, 1) + WindowNll(2, 7, 5) + WindowNll(4, 9, 7) +
                          WindowNll(6, 11, 9) + WindowNll(7, 12, 11);
  EXPECT_NEAR(r->nll_sum, expected, 1e-6 * std::abs(expected));
  // Default stride (window - 1 = 4): [0,5) 1-4, [4,9) 5-8, [7,12) 9-11.
  absl::StatusOr<PerplexityResult> d = Perplexity(*loaded_.model, ids_, {5, 0});
  ASSERT_TRUE(d.ok()) << d.status();
  const double expected_d = WindowNll(0, 5, 1) + WindowNll(4, 9, 5) + WindowNll(7, 12, 9);
  EXPECT_NEAR(d->nll_sum, expected_d, 1e-6 * std::abs(expected_d));
}

TEST_F(PerplexityTest, RejectsBadArguments) {
  const std::vector<int32_t> one = {1};
  EXPECT_EQ(Perplexity(*loaded_.model, one).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<PerplexityResult> r = Perplexity(*loaded_.model, ids_, {1, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("window"), std::string::npos);
  r = Perplexity(*loaded_.model, ids_, {4, 4});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("stride"), std::string::npos);
  const std::vector<int32_t> bad = {1, 600};
  EXPECT_FALSE(Perplexity(*loaded_.model, bad).ok());
}

}  // namespace
}  // namespace linearize::runtime
