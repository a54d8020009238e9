// Many threads update the same series while another scrapes: no update is
// lost, and every scrape is internally consistent (_count == +Inf bucket).
#include <atomic>
#include <thread>
#include <vector>

#include "common/metrics/registry.h"
#include "common/metrics/text_serializer.h"
#include "gtest/gtest.h"

namespace linearize::metrics {
namespace {

TEST(ConcurrencyTest, NoLostUpdatesUnderContention) {
  Registry registry;
  auto& counters = BuildCounter().Name("c_total").Help("h").Register(registry);
  auto& gauges = BuildGauge().Name("g").Help("h").Register(registry);
  auto& histograms = BuildHistogram().Name("h").Help("h").Register(registry);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::thread scraper([&] {
    while (!done.load()) {
      for (const MetricFamily& f : registry.Collect()) {
        for (const ClientMetric& m : f.metric) {
          if (f.type == MetricType::kHistogram) {
            ASSERT_EQ(m.histogram.sample_count, m.histogram.bucket.back().cumulative_count);
            for (size_t i = 1; i < m.histogram.bucket.size(); ++i) {
              ASSERT_LE(m.histogram.bucket[i - 1].cumulative_count,
                        m.histogram.bucket[i].cumulative_count);
            }
          }
        }
      }
      TextSerializer().Serialize(registry.Collect());
      scrapes.fetch_add(1);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every thread also creates series, racing with the others.
        counters.Add({{"shard", std::to_string(i % 4)}}).Increment();
        gauges.Add({}).Increment(t % 2 == 0 ? 1 : -1);
        histograms.Add({}, Histogram::BucketBoundaries{1, 2}).Observe(i % 3);
      }
    });
  }
  for (auto& th : threads) th.join();
  done.store(true);
  scraper.join();

  double total = 0;
  for (int s = 0; s < 4; ++s) total += counters.Add({{"shard", std::to_string(s)}}).Value();
  EXPECT_DOUBLE_EQ(total, kThreads * kPerThread);
  EXPECT_DOUBLE_EQ(gauges.Add({}).Value(), 0);
  ClientMetric h = histograms.Add({}, Histogram::BucketBoundaries{}).Collect();
  EXPECT_EQ(h.histogram.sample_count, static_cast<uint64_t>(kThreads * kPerThread));
  // Values 0, 1, 2 in equal thirds (kPerThread is not a multiple of 3:
  // count exactly).
  uint64_t zeros = 0, ones = 0, twos = 0;
  for (int i = 0; i < kPerThread; ++i) (i % 3 == 0 ? zeros : i % 3 == 1 ? ones : twos)++;
  EXPECT_EQ(h.histogram.bucket[0].cumulative_count, kThreads * (zeros + ones));
  EXPECT_EQ(h.histogram.bucket[1].cumulative_count, kThreads * (zeros + ones + twos));
  EXPECT_DOUBLE_EQ(h.histogram.sample_sum, kThreads * (ones + 2.0 * twos));
  EXPECT_GT(scrapes.load(), 0);
}

}  // namespace
}  // namespace linearize::metrics
