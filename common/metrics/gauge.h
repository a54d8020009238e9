// A value that goes up and down (queue depth, memory in use). Thread-safe
// and lock-free.
#pragma once

#include <atomic>

#include "common/metrics/metric_family.h"

namespace linearize::metrics {

class Gauge {
 public:
  static constexpr MetricType kType = MetricType::kGauge;

  Gauge() = default;
  explicit Gauge(double value) : value_(value) {}
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Increment(double value = 1.0);
  void Decrement(double value = 1.0);
  void Set(double value);
  // Sets the value to the current Unix time in seconds.
  void SetToCurrentTime();
  double Value() const;

  ClientMetric Collect() const;

 private:
  std::atomic<double> value_{0.0};
};

}  // namespace linearize::metrics
