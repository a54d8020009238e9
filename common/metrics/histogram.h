// A distribution over fixed buckets (latencies, batch sizes). Thread-safe
// and lock-free: each bucket is an atomic count, so Observe never blocks a
// scrape or another observer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/metrics/metric_family.h"

namespace linearize::metrics {

class Histogram {
 public:
  static constexpr MetricType kType = MetricType::kHistogram;
  // Upper bounds of the buckets, strictly increasing and finite; the +Inf
  // bucket is implicit (a trailing +Inf is accepted and dropped).
  using BucketBoundaries = std::vector<double>;

  // Aborts on boundaries that are not strictly increasing or hold NaN
  // (they are constants in code).
  explicit Histogram(const BucketBoundaries& buckets);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose bound is >= value (NaN lands
  // in +Inf) and adds it to the sum.
  void Observe(double value);

  const BucketBoundaries& bucket_boundaries() const { return bounds_; }

  // _count always equals the +Inf bucket; _sum may trail a concurrent
  // Observe by that one value.
  ClientMetric Collect() const;

 private:
  BucketBoundaries bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

// `count` bounds start, start*factor, start*factor^2, ... (start > 0,
// factor > 1, count >= 1; aborts otherwise).
Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start+width, ... (width > 0, count >= 1).
Histogram::BucketBoundaries LinearBuckets(double start, double width, int count);

}  // namespace linearize::metrics
