// Label sets and the Prometheus naming rules for metrics and labels.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace linearize::metrics {

// Label name -> value. Values may hold any UTF-8; the serializer escapes.
using Labels = std::map<std::string, std::string>;

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved by Prometheus).
bool IsValidLabelName(std::string_view name);

// Names are constants in code, so a bad one is a programming error: this
// prints `what` to stderr and aborts (as prometheus-cpp throws).
[[noreturn]] void FailMetricDefinition(const std::string& what);

}  // namespace linearize::metrics
