// The report: JSON fields, Markdown tables and PNG plots on disk.
#include "common/eval/report.h"

#include <fstream>
#include <sstream>

#include "common/eval/plot.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

EvalReport Sample() {
  EvalReport r;
  r.model = "student_dir";
  r.teacher = "teacher.gguf";
  PositionCurve curve{32, {0, 32, 64}, {3.0, 2.5, 2.25}, {31, 32, 32}};
  r.perplexity.push_back({"teacher", "english.txt", {190.0, 95, 2.0, 7.389}, curve});
  r.perplexity.push_back({"student", "english.txt", {237.5, 95, 2.5, 12.18}, curve});
  r.comparisons.push_back({"student", Comparison{95, 2.0, 2.5, 7.389, 12.18, 1.648, 0.31, 0.75}});
  r.attention_layers.push_back({"student", LayerError{0, 95, 0.0125, 0.11}});
  r.attention_layers.push_back({"student", LayerError{1, 95, 0.5, 0.7}});
  r.mqar.push_back({"teacher", {128, 4, 0, 16, 12, 0.75}});
  r.mqar.push_back({"teacher", {256, 4, 0, 16, 8, 0.5}});
  r.passkey.push_back({"teacher", {1024, 0, 0.5, 4, 3, 0.75}});
  McResult mc;
  mc.task = "arithmetic";
  mc.num_fewshot = 5;
  mc.questions = 30;
  mc.acc = 0.5;
  mc.acc_norm = 0.6;
  r.mc.push_back({"teacher", mc});
  r.speed.push_back({"teacher", {128, 64, 2, 900.0, 40.0}});
  return r;
}

TEST(ReportTest, JsonAndMarkdown) {
  const EvalReport r = Sample();
  const nlohmann::json j = ReportJson(r);
  EXPECT_EQ(j["teacher"], "teacher.gguf");
  EXPECT_EQ(j["perplexity"].size(), 2u);
  EXPECT_EQ(j["perplexity"][0]["curve"]["start"][1], 32);
  EXPECT_DOUBLE_EQ(j["comparisons"][0]["kl"].get<double>(), 0.31);
  EXPECT_EQ(j["mqar"][1]["context_length"], 256);
  EXPECT_DOUBLE_EQ(j["multiple_choice"][0]["acc_norm"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(j["speed"][0]["decode_tokens_per_second"].get<double>(), 40.0);
  const std::string md = ReportMarkdown(r);
  EXPECT_NE(md.find("| teacher | english.txt | 95 | 2.0000 | 7.389 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| teacher | arithmetic | 5 | 30 | 0.500 | 0.600 |"), std::string::npos);
  EXPECT_NE(md.find("| teacher | 256 | 4 | 16 | 8 | 0.500 |"), std::string::npos);
  EXPECT_NE(md.find("| student | 1 | 95 | 0.5 | 0.7000 |"), std::string::npos) << md;
  EXPECT_DOUBLE_EQ(j["attention_layers"][0]["relative_error"].get<double>(), 0.11);
}

TEST(ReportTest, WritesFilesAndPlots) {
  const std::string dir = testing::MakeTempDir("eval_report") + "/out";
  ASSERT_TRUE(WriteReport(Sample(), dir).ok());
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir + "/report.json"));
  EXPECT_EQ(j["model"], "student_dir");
  EXPECT_NE(Slurp(dir + "/report.md").find("## Passkey retrieval"), std::string::npos);
  for (const char* png :
       {"/ppl_vs_position.png", "/recall_vs_context.png", "/attention_error_by_layer.png"}) {
    const std::string bytes = Slurp(dir + png);
    ASSERT_GT(bytes.size(), 1000u) << png;
    EXPECT_EQ(bytes.substr(1, 3), "PNG") << png;
  }
  testing::RemoveTree(dir.substr(0, dir.size() - 4));
}

TEST(ReportTest, PlotRejectsBadSeries) {
  const std::string dir = testing::MakeTempDir("eval_plot");
  EXPECT_FALSE(WriteLinePlot(dir + "/a.png", {"t", "x", "y"}, {}).ok());
  EXPECT_FALSE(WriteLinePlot(dir + "/a.png", {"t", "x", "y"}, {{"s", {1, 2}, {1}}}).ok());
  EXPECT_FALSE(WriteLinePlot(dir + "/a.png", {"t", "x", "y", true}, {{"s", {0, 2}, {1, 2}}}).ok());
  EXPECT_TRUE(WriteLinePlot(dir + "/a.png", {"t", "x", "y"}, {{"s", {1, 2}, {1, 2}}}).ok());
  testing::RemoveTree(dir);
}

TEST(ReportTest, ReadsBackWhatItWrote) {
  const std::string dir = testing::MakeTempDir("eval_report_read");
  const EvalReport r = Sample();
  ASSERT_TRUE(WriteReport(r, dir).ok());
  absl::StatusOr<EvalReport> back = ReadReportJson(dir + "/report.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ReportJson(*back), ReportJson(r));

  std::ofstream(dir + "/bad.json") << R"({"model": "m", "mqar": [{"model": "teacher"}]})";
  absl::StatusOr<EvalReport> bad = ReadReportJson(dir + "/bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mqar[0]: missing field \"context_length\""),
            std::string::npos)
      << bad.status();
  std::ofstream(dir + "/type.json") << R"({"model": "m", "speed": [{"model": 3}]})";
  EXPECT_NE(ReadReportJson(dir + "/type.json").status().message().find("speed[0].model: wrong type"),
            std::string::npos);
  EXPECT_EQ(ReadReportJson(dir + "/none.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(ReportTest, MergesStudentsOfOneTeacher) {
  EvalReport a = Sample();
  EvalReport b = Sample();
  b.teacher = "/elsewhere/teacher.gguf";  // the same file name on another host
  b.perplexity[1].result.perplexity = 20.0;
  b.comparisons[0].result.kl = 0.5;
  b.mqar.push_back({"teacher", {512, 4, 0, 16, 4, 0.25}});  // a setting only b has
  b.mqar.push_back({"student", {512, 4, 0, 16, 1, 0.0625}});
  absl::StatusOr<EvalReport> m = MergeReports({{"lolcats", a}, {"lizard", b}});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->model, "lolcats, lizard");
  EXPECT_EQ(m->teacher, "teacher.gguf");
  ASSERT_EQ(m->perplexity.size(), 3u);  // the teacher once, then each student
  EXPECT_EQ(m->perplexity[0].model, "teacher");
  EXPECT_EQ(m->perplexity[1].model, "lolcats");
  EXPECT_EQ(m->perplexity[2].model, "lizard");
  EXPECT_DOUBLE_EQ(m->perplexity[2].result.perplexity, 20.0);
  ASSERT_EQ(m->comparisons.size(), 2u);
  EXPECT_EQ(m->comparisons[1].model, "lizard");
  EXPECT_DOUBLE_EQ(m->comparisons[1].result.kl, 0.5);
  // a's two teacher MQAR rows, then b's new 512 row and its student row.
  ASSERT_EQ(m->mqar.size(), 4u);
  EXPECT_EQ(m->mqar[2].model, "teacher");
  EXPECT_EQ(m->mqar[2].result.context_length, 512);
  EXPECT_EQ(m->mqar[3].model, "lizard");
  EXPECT_EQ(m->speed.size(), 1u);
  const std::string md = ReportMarkdown(*m);
  EXPECT_NE(md.find("| lizard | 95 | 7.389 | 12.180 | 1.6480 | 0.5000 | 0.7500 |"), std::string::npos)
      << md;

  b.teacher = "other.gguf";
  EXPECT_FALSE(MergeReports({{"lolcats", a}, {"lizard", b}}).ok());
  // One student's second run adds only what the first did not have.
  EvalReport c = Sample();
  c.attention_layers.push_back({"student", LayerError{2, 95, 0.25, 0.5}});
  absl::StatusOr<EvalReport> twice = MergeReports({{"x", a}, {"x", c}});
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(twice->model, "x");
  EXPECT_EQ(twice->perplexity.size(), 2u);
  EXPECT_EQ(twice->comparisons.size(), 1u);
  ASSERT_EQ(twice->attention_layers.size(), 3u);
  EXPECT_EQ(twice->attention_layers[2].result.layer, 2);
  EXPECT_FALSE(MergeReports({{"teacher", a}}).ok());
  EXPECT_FALSE(MergeReports({}).ok());
}

}  // namespace
}  // namespace linearize::eval
