// The Prometheus text exposition format, version 0.0.4: HELP and TYPE lines,
// escaped label values, histograms as _bucket (cumulative, with le="+Inf"),
// _sum and _count.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/metrics/metric_family.h"

namespace linearize::metrics {

// The Content-Type of what TextSerializer writes.
inline constexpr std::string_view kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

class TextSerializer {
 public:
  std::string Serialize(const std::vector<MetricFamily>& families) const;
  void Serialize(const MetricFamily& family, std::string& out) const;
};

// Sample values: shortest text that reads back to the same double; NaN,
// +Inf and -Inf as Prometheus spells them.
std::string FormatValue(double value);
// Label values: backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view value);
// HELP text: backslash and newline escaped.
std::string EscapeHelp(std::string_view help);

}  // namespace linearize::metrics
