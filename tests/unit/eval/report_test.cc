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
  r.comparison = Comparison{95, 2.0, 2.5, 7.389, 12.18, 1.648, 0.31, 0.75};
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
  EXPECT_DOUBLE_EQ(j["comparison"]["kl"].get<double>(), 0.31);
  EXPECT_EQ(j["mqar"][1]["context_length"], 256);
  EXPECT_DOUBLE_EQ(j["multiple_choice"][0]["acc_norm"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(j["speed"][0]["decode_tokens_per_second"].get<double>(), 40.0);
  const std::string md = ReportMarkdown(r);
  EXPECT_NE(md.find("| teacher | english.txt | 95 | 2.0000 | 7.389 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| teacher | arithmetic | 5 | 30 | 0.500 | 0.600 |"), std::string::npos);
  EXPECT_NE(md.find("| teacher | 256 | 4 | 16 | 8 | 0.500 |"), std::string::npos);
}

TEST(ReportTest, WritesFilesAndPlots) {
  const std::string dir = testing::MakeTempDir("eval_report") + "/out";
  ASSERT_TRUE(WriteReport(Sample(), dir).ok());
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir + "/report.json"));
  EXPECT_EQ(j["model"], "student_dir");
  EXPECT_NE(Slurp(dir + "/report.md").find("## Passkey retrieval"), std::string::npos);
  for (const char* png : {"/ppl_vs_position.png", "/recall_vs_context.png"}) {
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

}  // namespace
}  // namespace linearize::eval
