// Counter, Gauge, Histogram, Family and Registry semantics.
#include <cmath>
#include <limits>

#include "common/metrics/registry.h"
#include "gtest/gtest.h"

namespace linearize::metrics {
namespace {

TEST(CounterTest, IncrementsAndIgnoresNegativeAndNaN) {
  Counter c;
  c.Increment();
  c.Increment(2.5);
  c.Increment(-1);
  c.Increment(std::nan(""));
  EXPECT_DOUBLE_EQ(c.Value(), 3.5);
  EXPECT_DOUBLE_EQ(c.Collect().counter.value, 3.5);
}

TEST(GaugeTest, GoesUpAndDown) {
  Gauge g;
  g.Increment(5);
  g.Decrement(2);
  EXPECT_DOUBLE_EQ(g.Value(), 3);
  g.Set(-7.25);
  EXPECT_DOUBLE_EQ(g.Collect().gauge.value, -7.25);
  g.SetToCurrentTime();
  EXPECT_GT(g.Value(), 1.6e9);  // after 2020
}

TEST(HistogramTest, CountsInFirstBucketWhoseBoundIsAtLeastTheValue) {
  Histogram h({1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0, 100.0}) h.Observe(v);
  ClientMetric m = h.Collect();
  ASSERT_EQ(m.histogram.bucket.size(), 4u);
  EXPECT_EQ(m.histogram.bucket[0].cumulative_count, 2u);  // <= 1: 0.5, 1.0
  EXPECT_EQ(m.histogram.bucket[1].cumulative_count, 4u);  // <= 2: + 1.5, 2.0
  EXPECT_EQ(m.histogram.bucket[2].cumulative_count, 5u);  // <= 5: + 3.0
  EXPECT_EQ(m.histogram.bucket[3].cumulative_count, 6u);  // +Inf
  EXPECT_TRUE(std::isinf(m.histogram.bucket[3].upper_bound));
  EXPECT_EQ(m.histogram.sample_count, 6u);
  EXPECT_DOUBLE_EQ(m.histogram.sample_sum, 108.0);
}

TEST(HistogramTest, TrailingInfIsDroppedAndNaNGoesToInf) {
  Histogram h({1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.bucket_boundaries().size(), 1u);
  h.Observe(std::nan(""));
  ClientMetric m = h.Collect();
  EXPECT_EQ(m.histogram.bucket[0].cumulative_count, 0u);
  EXPECT_EQ(m.histogram.bucket[1].cumulative_count, 1u);
}

TEST(HistogramTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (Histogram::BucketBoundaries{1, 2, 4, 8}));
  EXPECT_EQ(LinearBuckets(0.5, 0.5, 3), (Histogram::BucketBoundaries{0.5, 1.0, 1.5}));
}

TEST(HistogramDeathTest, RejectsUnsortedBounds) {
  EXPECT_DEATH(Histogram({1, 1}), "strictly increasing");
  EXPECT_DEATH(Histogram({2, 1}), "strictly increasing");
  EXPECT_DEATH(Histogram({std::nan("")}), "not finite");
}

TEST(NamesTest, MetricAndLabelNames) {
  EXPECT_TRUE(IsValidMetricName("linearize_jobs"));
  EXPECT_TRUE(IsValidMetricName("ns:rate_5m"));
  EXPECT_FALSE(IsValidMetricName("9lives"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_TRUE(IsValidLabelName("worker"));
  EXPECT_TRUE(IsValidLabelName("_x1"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("1a"));
}

TEST(FamilyTest, AddReturnsTheSameSeriesForTheSameLabels) {
  Registry registry;
  auto& family = BuildCounter().Name("x_total").Help("h").Register(registry);
  Counter& a = family.Add({{"k", "v"}});
  Counter& b = family.Add({{"k", "v"}});
  Counter& c = family.Add({{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  EXPECT_TRUE(family.Has({{"k", "w"}}));
  family.Remove(&c);
  EXPECT_FALSE(family.Has({{"k", "w"}}));
  EXPECT_EQ(family.Collect().metric.size(), 1u);
}

TEST(FamilyTest, ConstantLabelsComeFirst) {
  Registry registry;
  auto& family = BuildGauge().Name("g").Help("h").Labels({{"service", "s"}}).Register(registry);
  family.Add({{"a", "1"}}).Set(2);
  MetricFamily collected = family.Collect();
  ASSERT_EQ(collected.metric.size(), 1u);
  EXPECT_EQ(collected.metric[0].label,
            (std::vector<ClientMetric::Label>{{"service", "s"}, {"a", "1"}}));
}

TEST(FamilyTest, HistogramSeriesTakeTheirBuckets) {
  Registry registry;
  auto& family = BuildHistogram().Name("h_seconds").Help("h").Register(registry);
  Histogram& h = family.Add({{"kind", "a"}}, Histogram::BucketBoundaries{0.1, 1});
  EXPECT_EQ(h.bucket_boundaries().size(), 2u);
  // Same labels again: the existing series, the new buckets are ignored.
  EXPECT_EQ(&family.Add({{"kind", "a"}}, Histogram::BucketBoundaries{5}), &h);
}

TEST(FamilyDeathTest, RejectsBadLabels) {
  Registry registry;
  auto& counters =
      BuildCounter().Name("c_total").Help("h").Labels({{"svc", "x"}}).Register(registry);
  EXPECT_DEATH(counters.Add({{"bad-name", "v"}}), "label name");
  EXPECT_DEATH(counters.Add({{"svc", "y"}}), "constant label");
  auto& histograms = BuildHistogram().Name("h").Help("h").Register(registry);
  EXPECT_DEATH(histograms.Add({{"le", "1"}}, Histogram::BucketBoundaries{1}), "reserved");
  EXPECT_DEATH(BuildGauge().Name("bad name").Help("h").Register(registry), "metric name");
}

TEST(RegistryTest, SameNameAndTypeMergesDifferentTypeAborts) {
  Registry registry;
  auto& a = BuildCounter().Name("n_total").Help("h").Register(registry);
  auto& b = BuildCounter().Name("n_total").Help("other help").Register(registry);
  EXPECT_EQ(&a, &b);
  EXPECT_DEATH(BuildGauge().Name("n_total").Help("h").Register(registry), "another type");
}

TEST(RegistryTest, CollectsInRegistrationOrderAndRemoves) {
  Registry registry;
  auto& z = BuildGauge().Name("z").Help("h").Register(registry);
  BuildGauge().Name("a").Help("h").Register(registry);
  auto families = registry.Collect();
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(families[0].name, "z");
  EXPECT_EQ(families[1].name, "a");
  EXPECT_TRUE(registry.Remove(z));
  EXPECT_FALSE(registry.Remove(z));
  EXPECT_EQ(registry.Collect().size(), 1u);
}

}  // namespace
}  // namespace linearize::metrics
