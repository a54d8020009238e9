#include "common/metrics/gauge.h"

#include <chrono>

namespace linearize::metrics {

void Gauge::Increment(double value) { value_.fetch_add(value, std::memory_order_relaxed); }

void Gauge::Decrement(double value) { value_.fetch_sub(value, std::memory_order_relaxed); }

void Gauge::Set(double value) { value_.store(value, std::memory_order_relaxed); }

void Gauge::SetToCurrentTime() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  Set(std::chrono::duration<double>(now).count());
}

double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

ClientMetric Gauge::Collect() const {
  ClientMetric m;
  m.gauge.value = Value();
  return m;
}

}  // namespace linearize::metrics
