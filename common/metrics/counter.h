// A monotonically increasing value (requests served, tokens generated).
// Thread-safe and lock-free.
#pragma once

#include <atomic>

#include "common/metrics/metric_family.h"

namespace linearize::metrics {

class Counter {
 public:
  static constexpr MetricType kType = MetricType::kCounter;

  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `value`. Negative and NaN increments are ignored: a counter never
  // goes down (as in prometheus-cpp).
  void Increment(double value = 1.0);
  double Value() const;

  ClientMetric Collect() const;

 private:
  std::atomic<double> value_{0.0};
};

}  // namespace linearize::metrics
