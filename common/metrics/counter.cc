#include "common/metrics/counter.h"

namespace linearize::metrics {

void Counter::Increment(double value) {
  if (!(value >= 0.0)) return;  // also rejects NaN
  value_.fetch_add(value, std::memory_order_relaxed);
}

double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

ClientMetric Counter::Collect() const {
  ClientMetric m;
  m.counter.value = Value();
  return m;
}

}  // namespace linearize::metrics
