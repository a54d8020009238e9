#include "common/metrics/text_serializer.h"

#include <charconv>
#include <cmath>

namespace linearize::metrics {
namespace {

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// name{a="x",b="y"} or name{a="x",le="0.5"}; no braces when there are no
// labels at all.
void WriteSeries(std::string& out, const std::string& name, std::string_view suffix,
                 const std::vector<ClientMetric::Label>& labels, const char* extra_name,
                 const std::string* extra_value) {
  out += name;
  out += suffix;
  if (labels.empty() && extra_name == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& label : labels) {
    if (!first) out += ',';
    first = false;
    out += label.name;
    out += "=\"";
    out += EscapeLabelValue(label.value);
    out += '"';
  }
  if (extra_name != nullptr) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += *extra_value;
    out += '"';
  }
  out += '}';
}

void WriteSample(std::string& out, const std::string& name, std::string_view suffix,
                 const ClientMetric& metric, double value, const char* extra_name = nullptr,
                 const std::string* extra_value = nullptr) {
  WriteSeries(out, name, suffix, metric.label, extra_name, extra_value);
  out += ' ';
  out += FormatValue(value);
  out += '\n';
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void TextSerializer::Serialize(const MetricFamily& family, std::string& out) const {
  out += "# HELP ";
  out += family.name;
  out += ' ';
  out += EscapeHelp(family.help);
  out += "\n# TYPE ";
  out += family.name;
  out += ' ';
  out += TypeName(family.type);
  out += '\n';
  for (const ClientMetric& metric : family.metric) {
    switch (family.type) {
      case MetricType::kCounter:
        WriteSample(out, family.name, "", metric, metric.counter.value);
        break;
      case MetricType::kGauge:
        WriteSample(out, family.name, "", metric, metric.gauge.value);
        break;
      case MetricType::kHistogram: {
        for (const auto& bucket : metric.histogram.bucket) {
          const std::string le = FormatValue(bucket.upper_bound);
          WriteSample(out, family.name, "_bucket", metric,
                      static_cast<double>(bucket.cumulative_count), "le", &le);
        }
        WriteSample(out, family.name, "_sum", metric, metric.histogram.sample_sum);
        WriteSample(out, family.name, "_count", metric,
                    static_cast<double>(metric.histogram.sample_count));
        break;
      }
    }
  }
}

std::string TextSerializer::Serialize(const std::vector<MetricFamily>& families) const {
  std::string out;
  for (const MetricFamily& family : families) Serialize(family, out);
  return out;
}

}  // namespace linearize::metrics
