// Anything that yields metric families at scrape time: a Registry, or a
// collector that reads its values when asked (ProcessCollector).
#pragma once

#include <vector>

#include "common/metrics/metric_family.h"

namespace linearize::metrics {

class Collectable {
 public:
  virtual ~Collectable() = default;
  // Must be thread-safe: scrapes run on the exposer's threads.
  virtual std::vector<MetricFamily> Collect() const = 0;
};

}  // namespace linearize::metrics
