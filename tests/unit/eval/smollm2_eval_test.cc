// The evaluation library on the real default model (SmolLM2-135M-Instruct
// Q4_1; skips when models/ has none): per-token scores against transformers
// on the same file (tests/fixtures/smollm2/reference.json), and the shipped
// multiple-choice task scored (finite log-likelihoods for every choice).
#include <cmath>
#include <cstdio>

#include "common/eval/multiple_choice.h"
#include "common/eval/token_scores.h"
#include "common/model/load.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

TEST(SmolLm2EvalTest, ScoresMatchTransformersAndTasksRun) {
  absl::StatusOr<std::string> path = model::FindDefaultModel();
  if (!path.ok()) GTEST_SKIP() << "default model absent: " << path.status();
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(*path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const nlohmann::json ref =
      testing::ReadJson(testing::FixturePath("smollm2/reference.json"))["text"];
  const auto ids = ref["ids"].get<std::vector<int32_t>>();
  absl::StatusOr<TokenNll> scores = ScoreTokens(*loaded->model, ids);
  ASSERT_TRUE(scores.ok()) << scores.status();
  double sum = 0;
  for (double v : scores->nll) sum += v;
  const double mean = sum / static_cast<double>(scores->nll.size());
  const double want = ref["mean_nll"].get<double>();
  std::printf("SmolLM2 mean NLL over %zu targets: ours %.6f, transformers %.6f\n",
              scores->nll.size(), mean, want);
  EXPECT_NEAR(mean, want, 1e-4 * want);

  absl::StatusOr<McTask> task =
      LoadMcTask(testing::FixturePath("eval/tasks/world_facts.jsonl"));
  ASSERT_TRUE(task.ok()) << task.status();
  McOptions options;
  options.limit = 3;
  absl::StatusOr<McResult> r = EvaluateMc(*loaded->model, *loaded->tokenizer, *task, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->questions, 3);
  for (const McQuestionScore& s : r->scores) {
    ASSERT_EQ(s.loglik.size(), 4u);
    for (double ll : s.loglik) EXPECT_TRUE(std::isfinite(ll) && ll < 0);
  }
}

}  // namespace
}  // namespace linearize::eval
