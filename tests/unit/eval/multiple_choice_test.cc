// Multiple choice: parsing (JSONL and MMLU forms, errors naming file:line),
// few-shot prompts, and scores recomputed by hand from full forwards.
#include "common/eval/multiple_choice.h"

#include <ATen/ATen.h>

#include <cmath>

#include "common/model/load.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

TEST(McParseTest, BothFormsAndBlankLines) {
  const std::string text =
      R"({"context": "Q: 1 + 1 =\nA:", "choices": ["2", "3"], "gold": 0})"
      "\n\n"
      R"({"question": "Capital of France?", "A": "Rome", "B": "Paris", "C": "Oslo", "D": "Bern", "answer": "B"})"
      "\n"
      R"({"question": "2 * 3?", "choices": ["5", "6", "7", "8"], "answer": 1})"
      "\n";
  absl::StatusOr<McTask> task = ParseMcTask(text, "dir/arith.jsonl");
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->name, "arith");
  ASSERT_EQ(task->questions.size(), 3u);
  EXPECT_EQ(task->questions[0].context, "Q: 1 + 1 =\nA:");
  EXPECT_EQ(task->questions[1].context,
            "Capital of France?\nA. Rome\nB. Paris\nC. Oslo\nD. Bern\nAnswer:");
  EXPECT_EQ(task->questions[1].choices, (std::vector<std::string>{"A", "B", "C", "D"}));
  EXPECT_EQ(task->questions[1].gold, 1);
  EXPECT_EQ(task->questions[2].gold, 1);
}

TEST(McParseTest, MalformedLinesNameFileAndLine) {
  const std::string good = R"({"context": "x", "choices": ["a", "b"], "gold": 1})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "invalid JSON"},
      {R"({"context": "x", "choices": ["a"], "gold": 0})", "at least 2"},
      {R"({"context": "x", "choices": ["a", "b"], "gold": 2})", "gold"},
      {R"({"context": "x", "choices": ["a", 3], "gold": 0})", "strings"},
      {R"({"context": "x", "choices": ["a", "b"]})", "gold"},
      {R"({"question": "q", "A": "a", "B": "b", "C": "c", "answer": "A"})", "\"D\""},
      {R"({"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "E"})", "answer"},
      {R"([1, 2])", "object"},
  };
  for (const auto& [line, what] : cases) {
    absl::StatusOr<McTask> t = ParseMcTask(good + "\n\n" + line + "\n" + good, "tasks/t.jsonl");
    ASSERT_FALSE(t.ok()) << line;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("tasks/t.jsonl:3: "), std::string::npos)
        << t.status().message();
    EXPECT_NE(t.status().message().find(what), std::string::npos) << t.status().message();
  }
  EXPECT_FALSE(ParseMcTask("\n\n", "empty.jsonl").ok());
  EXPECT_EQ(LoadMcTask("/nonexistent/x.jsonl").status().code(), absl::StatusCode::kNotFound);
}

TEST(McParseTest, MmluCsv) {
  const std::string text =
      "\"What is \"\"x\"\"\nhere?\",a,\"b, c\",d,e,C\r\n"
      "\n"
      "Second?,1,2,3,4,A\n";
  absl::StatusOr<McTask> task = ParseMmluCsv(text, "data/high_school_physics_test.csv");
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->name, "high_school_physics_test");
  EXPECT_EQ(task->description,
            "The following are multiple choice questions (with answers) about high school "
            "physics.\n\n");
  ASSERT_EQ(task->questions.size(), 2u);
  EXPECT_EQ(task->questions[0].context,
            "What is \"x\"\nhere?\nA. a\nB. b, c\nC. d\nD. e\nAnswer:");
  EXPECT_EQ(task->questions[0].gold, 2);
  EXPECT_EQ(task->questions[1].gold, 0);
  EXPECT_TRUE(McPrompt(*task, 1, {}).starts_with(task->description + "Second?\n"));
  // The record that starts on line 4 (after a two-line record) is short.
  absl::StatusOr<McTask> bad = ParseMmluCsv(text + "q,1,2,3,A\n", "m.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("m.csv:5: expected 6 fields"), std::string::npos)
      << bad.status().message();
  bad = ParseMmluCsv("q,1,2,3,4,F\n", "m.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("m.csv:1: "), std::string::npos);
  EXPECT_FALSE(ParseMmluCsv("\"open,1,2,3,4,A\n", "m.csv").ok());
}

TEST(McParseTest, FewShotPromptsAreDeterministicAndExcludeTheQuestion) {
  McTask task;
  for (int i = 0; i < 6; ++i) {
    task.questions.push_back(
        {"Q" + std::to_string(i) + ":", {"a" + std::to_string(i), "b" + std::to_string(i)}, 1});
  }
  McOptions o;
  EXPECT_EQ(McPrompt(task, 2, o), "Q2:");
  o.num_fewshot = 3;
  const std::string p = McPrompt(task, 2, o);
  EXPECT_EQ(p, McPrompt(task, 2, o));
  EXPECT_TRUE(p.ends_with("\n\nQ2:")) << p;
  EXPECT_EQ(p.find("Q2: "), std::string::npos);
  int shots = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string shot = "Q" + std::to_string(i) + ": b" + std::to_string(i) + "\n\n";
    if (p.find(shot) != std::string::npos) ++shots;
  }
  EXPECT_EQ(shots, 3) << p;
  o.num_fewshot = 10;  // capped at the other 5
  const std::string all = McPrompt(task, 0, o);
  EXPECT_EQ(std::count(all.begin(), all.end(), ':'), 6);
}

// Scores recomputed by hand with the llama3_scaled tokenizer and model.
class McScoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = model::LoadModel(testing::ModelDir("llama3_scaled"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = *std::move(loaded);
  }
  // log p(cont | ctx) from one full forward over ctx + cont.
  double ByHand(const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
    std::vector<int64_t> ids(ctx.begin(), ctx.end());
    ids.insert(ids.end(), cont.begin(), cont.end());
    const at::Tensor logp =
        at::log_softmax((*loaded_.model->Forward(testing::Ids(ids)))[0].to(at::kDouble), -1);
    double sum = 0;
    for (size_t i = 0; i < cont.size(); ++i) {
      sum += logp[ctx.size() + i - 1][cont[i]].item<double>();
    }
    return sum;
  }
  model::LoadedModel loaded_;
};

TEST_F(McScoreTest, LogLikelihoodAndAccuracies) {
  const tokenizer::Tokenizer& tok = *loaded_.tokenizer;
  McTask task;
  task.name = "hand";
  task.questions.push_back({"The cat sat on the", {"mat", "extraordinarily long rug", "dog"}, 0});
  task.questions.push_back({"One two three", {"four", "five six", "seven"}, 2});
  absl::StatusOr<McResult> r = EvaluateMc(*loaded_.model, tok, task);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->questions, 2);
  int64_t correct = 0, correct_norm = 0;
  for (size_t q = 0; q < 2; ++q) {
    const McQuestion& mq = task.questions[q];
    const std::vector<int32_t> ctx = tok.Encode(mq.context, true);
    double best = -INFINITY, best_norm = -INFINITY;
    int64_t pred = -1, pred_norm = -1;
    for (size_t c = 0; c < mq.choices.size(); ++c) {
      const std::vector<int32_t> whole = tok.Encode(mq.context + " " + mq.choices[c], true);
      const std::vector<int32_t> cont(whole.begin() + ctx.size(), whole.end());
      const double ll = ByHand(ctx, cont);
      EXPECT_NEAR(r->scores[q].loglik[c], ll, 1e-6 * std::abs(ll)) << q << " " << c;
      if (ll > best) best = ll, pred = c;
      const double norm = ll / mq.choices[c].size();
      if (norm > best_norm) best_norm = norm, pred_norm = c;
    }
    EXPECT_EQ(r->scores[q].pred, pred);
    EXPECT_EQ(r->scores[q].pred_norm, pred_norm);
    correct += pred == mq.gold;
    correct_norm += pred_norm == mq.gold;
  }
  EXPECT_DOUBLE_EQ(r->acc, correct / 2.0);
  EXPECT_DOUBLE_EQ(r->acc_norm, correct_norm / 2.0);

  // Trailing spaces move to the continuation, as in the harness.
  absl::StatusOr<double> a = ContinuationLogLikelihood(*loaded_.model, tok, "The cat ", "sat");
  absl::StatusOr<double> b = ContinuationLogLikelihood(*loaded_.model, tok, "The cat", " sat");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_DOUBLE_EQ(*a, *b);
  EXPECT_FALSE(ContinuationLogLikelihood(*loaded_.model, tok, "The cat", "").ok());
}

TEST(McTaskFilesTest, ShippedTasksParse) {
  for (const char* name : {"arithmetic", "world_facts", "word_sense"}) {
    absl::StatusOr<McTask> t =
        LoadMcTask(testing::FixturePath(std::string("eval/tasks/") + name + ".jsonl"));
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_GE(t->questions.size(), 20u) << name;
  }
}

}  // namespace
}  // namespace linearize::eval
