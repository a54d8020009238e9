#include "common/metrics/registry.h"

#include <algorithm>

namespace linearize::metrics {

FamilyBase* Registry::Find(const std::string& name, MetricType type,
                           const Labels& constant_labels) {
  for (const auto& family : families_) {
    if (family->name() != name) continue;
    if (family->type() != type || family->constant_labels() != constant_labels) {
      FailMetricDefinition("metric \"" + name +
                           "\" registered again with another type or constant labels");
    }
    return family.get();
  }
  return nullptr;
}

bool Registry::Remove(const FamilyBase& family) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(families_.begin(), families_.end(),
                         [&](const auto& f) { return f.get() == &family; });
  if (it == families_.end()) return false;
  families_.erase(it);
  return true;
}

std::vector<MetricFamily> Registry::Collect() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MetricFamily> out;
  out.reserve(families_.size());
  for (const auto& family : families_) out.push_back(family->Collect());
  return out;
}

}  // namespace linearize::metrics
