// The standard process_* metrics of Prometheus client libraries, read from
// /proc/self when scraped: CPU seconds, resident and virtual memory, open
// and maximum file descriptors, start time.
#pragma once

#include <vector>

#include "common/metrics/collectable.h"

namespace linearize::metrics {

class ProcessCollector : public Collectable {
 public:
  // Metrics that cannot be read (no /proc) are left out, never faked.
  std::vector<MetricFamily> Collect() const override;
};

}  // namespace linearize::metrics
