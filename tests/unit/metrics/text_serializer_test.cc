// Golden checks of the text exposition format 0.0.4.
#include "common/metrics/text_serializer.h"

#include <limits>

#include "common/metrics/registry.h"
#include "gtest/gtest.h"

namespace linearize::metrics {
namespace {

TEST(FormatValueTest, ShortestRoundTripAndSpecials) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(1), "1");
  EXPECT_EQ(FormatValue(-2.5), "-2.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(std::stod(FormatValue(1.0 / 3)), 1.0 / 3);
}

TEST(EscapeTest, LabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeLabelValue("ünï ok"), "ünï ok");
  // HELP escapes backslash and newline but keeps quotes.
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\n"), "say \"hi\"\\\\\\n");
}

TEST(TextSerializerTest, GoldenExposition) {
  Registry registry;
  auto& jobs = BuildGauge().Name("linearize_jobs").Help("Jobs by state.").Register(registry);
  jobs.Add({{"state", "queued"}}).Set(3);
  jobs.Add({{"state", "running"}}).Set(1);
  auto& beats = BuildCounter()
                    .Name("linearize_worker_heartbeats_total")
                    .Help("Heartbeats.\nSecond line with a \\ backslash.")
                    .Labels({{"service", "scheduler"}})
                    .Register(registry);
  beats.Add({{"worker", "w\"1\"\n\\"}}).Increment(2);
  auto& durations = BuildHistogram()
                        .Name("linearize_task_duration_seconds")
                        .Help("Task durations.")
                        .Register(registry);
  auto& h = durations.Add({{"kind", "finetune"}}, Histogram::BucketBoundaries{0.5, 10});
  h.Observe(0.25);
  h.Observe(3);
  h.Observe(60);
  BuildGauge().Name("linearize_queue_depth").Help("").Register(registry).Add({}).Set(0);

  const std::string expected =
      "# HELP linearize_jobs Jobs by state.\n"
      "# TYPE linearize_jobs gauge\n"
      "linearize_jobs{state=\"queued\"} 3\n"
      "linearize_jobs{state=\"running\"} 1\n"
      "# HELP linearize_worker_heartbeats_total Heartbeats.\\nSecond line with a \\\\ backslash.\n"
      "# TYPE linearize_worker_heartbeats_total counter\n"
      "linearize_worker_heartbeats_total{service=\"scheduler\",worker=\"w\\\"1\\\"\\n\\\\\"} 2\n"
      "# HELP linearize_task_duration_seconds Task durations.\n"
      "# TYPE linearize_task_duration_seconds histogram\n"
      "linearize_task_duration_seconds_bucket{kind=\"finetune\",le=\"0.5\"} 1\n"
      "linearize_task_duration_seconds_bucket{kind=\"finetune\",le=\"10\"} 2\n"
      "linearize_task_duration_seconds_bucket{kind=\"finetune\",le=\"+Inf\"} 3\n"
      "linearize_task_duration_seconds_sum{kind=\"finetune\"} 63.25\n"
      "linearize_task_duration_seconds_count{kind=\"finetune\"} 3\n"
      "# HELP linearize_queue_depth \n"
      "# TYPE linearize_queue_depth gauge\n"
      "linearize_queue_depth 0\n";
  EXPECT_EQ(TextSerializer().Serialize(registry.Collect()), expected);
}

TEST(TextSerializerTest, HistogramWithoutLabelsHasOnlyLe) {
  Registry registry;
  auto& family = BuildHistogram().Name("b").Help("h").Register(registry);
  family.Add({}, Histogram::BucketBoundaries{1}).Observe(1);
  EXPECT_EQ(TextSerializer().Serialize(registry.Collect()),
            "# HELP b h\n# TYPE b histogram\n"
            "b_bucket{le=\"1\"} 1\nb_bucket{le=\"+Inf\"} 1\nb_sum 1\nb_count 1\n");
}

TEST(TextSerializerTest, EmptyFamilyHasOnlyHeaderLines) {
  Registry registry;
  BuildCounter().Name("e_total").Help("h").Register(registry);
  EXPECT_EQ(TextSerializer().Serialize(registry.Collect()),
            "# HELP e_total h\n# TYPE e_total counter\n");
}

}  // namespace
}  // namespace linearize::metrics
