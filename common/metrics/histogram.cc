#include "common/metrics/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "common/metrics/labels.h"

namespace linearize::metrics {

Histogram::Histogram(const BucketBoundaries& buckets) : bounds_(buckets) {
  if (!bounds_.empty() && bounds_.back() == std::numeric_limits<double>::infinity()) {
    bounds_.pop_back();
  }
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i])) {
      FailMetricDefinition("histogram bucket bound " + std::to_string(i) + " is not finite");
    }
    if (i > 0 && !(bounds_[i] > bounds_[i - 1])) {
      FailMetricDefinition("histogram bucket bounds must be strictly increasing (bound " +
                           std::to_string(i) + ")");
    }
  }
  counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  size_t index = bounds_.size();  // +Inf, also for NaN
  if (!std::isnan(value)) {
    index = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                bounds_.begin());
  }
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

ClientMetric Histogram::Collect() const {
  ClientMetric m;
  std::uint64_t cumulative = 0;
  m.histogram.bucket.reserve(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum_.load(std::memory_order_relaxed);
  return m;
}

Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    FailMetricDefinition("ExponentialBuckets needs start > 0, factor > 1, count >= 1");
  }
  Histogram::BucketBoundaries b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

Histogram::BucketBoundaries LinearBuckets(double start, double width, int count) {
  if (!(width > 0) || count < 1) {
    FailMetricDefinition("LinearBuckets needs width > 0, count >= 1");
  }
  Histogram::BucketBoundaries b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

}  // namespace linearize::metrics
