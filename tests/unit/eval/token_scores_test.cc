// eval::ScoreTokens / CurveByPosition / CompareModels against transformers
// (tests/fixtures/eval/compare_reference.json, from
// scripts/fixtures/make_eval_fixtures.py) and against brute force.
#include "common/eval/token_scores.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "common/model/load.h"
#include "common/runtime/perplexity.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

class TokenScoresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ref_ = testing::ReadJson(testing::FixturePath("eval/compare_reference.json"));
    ids_ = ref_.at("ids").get<std::vector<int32_t>>();
    chunk_ = ref_.at("chunk").get<int64_t>();
    auto t = model::LoadModel(testing::ModelDir("llama"));
    ASSERT_TRUE(t.ok()) << t.status();
    teacher_ = *std::move(t);
    auto s = model::LoadModel(testing::ModelDir("qwen2"));
    ASSERT_TRUE(s.ok()) << s.status();
    student_ = *std::move(s);
  }
  nlohmann::json ref_;
  std::vector<int32_t> ids_;
  int64_t chunk_ = 0;
  model::LoadedModel teacher_, student_;
};

TEST_F(TokenScoresTest, PerTokenNllMatchesTransformers) {
  absl::StatusOr<TokenNll> scores = ScoreTokens(*teacher_.model, ids_, chunk_);
  ASSERT_TRUE(scores.ok()) << scores.status();
  const auto want = ref_.at("teacher_nll").get<std::vector<double>>();
  const auto pos = ref_.at("positions").get<std::vector<int64_t>>();
  ASSERT_EQ(scores->nll.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(scores->nll[i], want[i], 1e-4 * std::max(1.0, std::abs(want[i]))) << i;
    EXPECT_EQ(scores->position[i], pos[i]) << i;
  }
}

TEST_F(TokenScoresTest, CurveBucketsAreMeansAndOneChunkMatchesPerplexity) {
  absl::StatusOr<TokenNll> scores = ScoreTokens(*teacher_.model, ids_, chunk_);
  ASSERT_TRUE(scores.ok()) << scores.status();
  absl::StatusOr<PositionCurve> curve = CurveByPosition(*scores, 32);
  ASSERT_TRUE(curve.ok()) << curve.status();
  // Brute force: bucket b = positions [32b, 32b + 32).
  ASSERT_EQ(curve->start.size(), 4u);  // positions 1..127
  int64_t total = 0;
  for (size_t b = 0; b < curve->start.size(); ++b) {
    double sum = 0;
    int64_t n = 0;
    for (size_t i = 0; i < scores->nll.size(); ++i) {
      if (scores->position[i] / 32 == static_cast<int64_t>(b)) {
        sum += scores->nll[i];
        ++n;
      }
    }
    EXPECT_EQ(curve->start[b], static_cast<int64_t>(b) * 32);
    EXPECT_EQ(curve->count[b], n);
    EXPECT_NEAR(curve->mean_nll[b], sum / n, 1e-12);
    total += n;
  }
  EXPECT_EQ(total, static_cast<int64_t>(ids_.size()) - 3);  // 3 chunks, one untargeted token each
  // A stream that fits one chunk: the mean equals runtime::Perplexity's.
  const std::span<const int32_t> head(ids_.data(), 100);
  absl::StatusOr<TokenNll> one = ScoreTokens(*teacher_.model, head);
  absl::StatusOr<runtime::PerplexityResult> ppl = runtime::Perplexity(*teacher_.model, head);
  ASSERT_TRUE(one.ok() && ppl.ok());
  double sum = 0;
  for (double v : one->nll) sum += v;
  EXPECT_NEAR(sum, ppl->nll_sum, 1e-6 * ppl->nll_sum);
  EXPECT_FALSE(CurveByPosition(*scores, 0).ok());
}

TEST_F(TokenScoresTest, ComparisonMatchesTransformers) {
  absl::StatusOr<Comparison> c = CompareModels(*teacher_.model, *student_.model, ids_, chunk_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tokens, static_cast<int64_t>(ref_.at("teacher_nll").size()));
  const double tp = ref_.at("teacher_perplexity").get<double>();
  const double sp = ref_.at("student_perplexity").get<double>();
  const double kl = ref_.at("kl").get<double>();
  EXPECT_NEAR(c->teacher_perplexity, tp, 1e-4 * tp);
  EXPECT_NEAR(c->student_perplexity, sp, 1e-4 * sp);
  EXPECT_NEAR(c->perplexity_ratio, sp / tp, 2e-4 * sp / tp);
  EXPECT_NEAR(c->kl, kl, 1e-4 * kl);
  EXPECT_NEAR(c->top1_agreement, ref_.at("top1_agreement").get<double>(), 1e-12);
}

TEST_F(TokenScoresTest, SelfComparisonAndPerturbedCopy) {
  absl::StatusOr<Comparison> self = CompareModels(*teacher_.model, *teacher_.model, ids_, chunk_);
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_NEAR(self->kl, 0.0, 1e-12);
  EXPECT_EQ(self->top1_agreement, 1.0);
  EXPECT_NEAR(self->perplexity_ratio, 1.0, 1e-12);

  // A copy with a noisy LM head: agreement and KL by brute force.
  model::ModelWeights w = teacher_.model->weights();
  at::manual_seed(7);
  w.lm_head = w.lm_head + 0.02 * at::randn(w.lm_head.sizes());
  auto perturbed = model::LlamaModel::Create(teacher_.model->config(), w);
  ASSERT_TRUE(perturbed.ok()) << perturbed.status();
  const std::span<const int32_t> head(ids_.data(), 64);
  absl::StatusOr<Comparison> c = CompareModels(*teacher_.model, **perturbed, head);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<int64_t> ids64(head.begin(), head.end());
  const at::Tensor tl =
      at::log_softmax(teacher_.model->Forward(testing::Ids(ids64))->to(at::kDouble)[0], -1);
  const at::Tensor sl =
      at::log_softmax((*perturbed)->Forward(testing::Ids(ids64))->to(at::kDouble)[0], -1);
  double kl = 0;
  int64_t agree = 0;
  for (int64_t j = 0; j + 1 < 64; ++j) {
    for (int64_t v = 0; v < tl.size(1); ++v) {
      const double p = tl[j][v].item<double>();
      kl += std::exp(p) * (p - sl[j][v].item<double>());
    }
    agree += tl[j].argmax().item<int64_t>() == sl[j].argmax().item<int64_t>();
  }
  EXPECT_NEAR(c->kl, kl / 63, 1e-6 * kl / 63);
  EXPECT_GT(c->kl, 0.0);
  EXPECT_EQ(c->top1_agreement, static_cast<double>(agree) / 63);
  EXPECT_GT(agree, 0);
  EXPECT_LT(agree, 63);
}

TEST_F(TokenScoresTest, RejectsBadArguments) {
  auto other = model::LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<Comparison> c = CompareModels(*teacher_.model, *other->model, ids_);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("vocabularies"), std::string::npos);
  EXPECT_FALSE(ScoreTokens(*teacher_.model, ids_, 1).ok());
  EXPECT_FALSE(ScoreTokens(*teacher_.model, ids_, 257).ok());
  EXPECT_FALSE(ScoreTokens(*teacher_.model, std::span<const int32_t>(ids_.data(), 1)).ok());
  const std::vector<int32_t> bad = {1, 600};
  EXPECT_FALSE(ScoreTokens(*teacher_.model, bad).ok());
}

}  // namespace
}  // namespace linearize::eval
