#include "common/metrics/family.h"

namespace linearize::metrics {

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type, Labels constant_labels)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      constant_labels_(std::move(constant_labels)) {
  if (!IsValidMetricName(name_)) FailMetricDefinition("metric name \"" + name_ + "\"");
  CheckLabels(constant_labels_);
}

void FamilyBase::CheckLabels(const Labels& labels) const {
  for (const auto& [label, value] : labels) {
    if (!IsValidLabelName(label)) {
      FailMetricDefinition(name_ + ": label name \"" + label + "\"");
    }
    if (type_ == MetricType::kHistogram && label == "le") {
      FailMetricDefinition(name_ + ": label \"le\" is reserved for histogram buckets");
    }
    if (&labels != &constant_labels_ && constant_labels_.count(label) > 0) {
      FailMetricDefinition(name_ + ": label \"" + label + "\" is already a constant label");
    }
  }
}

void FamilyBase::AddLabels(const Labels& labels, ClientMetric& metric) const {
  metric.label.reserve(constant_labels_.size() + labels.size());
  for (const auto& [name, value] : constant_labels_) metric.label.push_back({name, value});
  for (const auto& [name, value] : labels) metric.label.push_back({name, value});
}

}  // namespace linearize::metrics
