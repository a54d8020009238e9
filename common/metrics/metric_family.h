// Snapshots of metrics as a scrape sees them, named after prometheus-cpp's
// ClientMetric / MetricFamily so that a later swap to that library is a
// rename. Collectables produce these; serializers turn them into text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace linearize::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

// One time series' value at collection time.
struct ClientMetric {
  struct Label {
    std::string name;
    std::string value;
    bool operator==(const Label&) const = default;
  };
  struct Counter {
    double value = 0.0;
  };
  struct Gauge {
    double value = 0.0;
  };
  struct Bucket {
    std::uint64_t cumulative_count = 0;
    double upper_bound = 0.0;  // the last bucket's bound is +Inf
  };
  struct Histogram {
    std::uint64_t sample_count = 0;
    double sample_sum = 0.0;
    std::vector<Bucket> bucket;  // ascending bounds, cumulative counts
  };

  std::vector<Label> label;  // constant labels first, then the series' own
  Counter counter;
  Gauge gauge;
  Histogram histogram;
};

// A named group of series of one type.
struct MetricFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<ClientMetric> metric;
};

}  // namespace linearize::metrics
