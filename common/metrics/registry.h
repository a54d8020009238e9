// A set of metric families that a scrape collects (prometheus-cpp's
// Registry). Thread-safe. Families live as long as the registry; services
// usually keep one registry for the process and hand it to the Exposer.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/metrics/collectable.h"
#include "common/metrics/counter.h"
#include "common/metrics/family.h"
#include "common/metrics/gauge.h"
#include "common/metrics/histogram.h"

namespace linearize::metrics {

class Registry : public Collectable {
 public:
  // Returns the family `name`, creating it. Registering a name again with
  // the same type and constant labels returns the existing family, so
  // several components may declare the same metric; a different type or
  // constant labels aborts (a programming error).
  template <typename T>
  Family<T>& Add(const std::string& name, const std::string& help, const Labels& constant_labels);

  // Removes a family and all its series; false if it is not registered.
  bool Remove(const FamilyBase& family);

  // Families in registration order.
  std::vector<MetricFamily> Collect() const override;

 private:
  FamilyBase* Find(const std::string& name, MetricType type, const Labels& constant_labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

template <typename T>
Family<T>& Registry::Add(const std::string& name, const std::string& help,
                         const Labels& constant_labels) {
  std::lock_guard<std::mutex> lock(mu_);
  if (FamilyBase* existing = Find(name, T::kType, constant_labels)) {
    return static_cast<Family<T>&>(*existing);
  }
  auto family = std::make_unique<Family<T>>(name, help, constant_labels);
  Family<T>& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

// Fluent builder as in prometheus-cpp:
//   auto& f = BuildCounter().Name("x_total").Help("...").Register(registry);
template <typename T>
class Builder {
 public:
  Builder& Name(const std::string& name) {
    name_ = name;
    return *this;
  }
  Builder& Help(const std::string& help) {
    help_ = help;
    return *this;
  }
  Builder& Labels(const metrics::Labels& labels) {
    labels_ = labels;
    return *this;
  }
  Family<T>& Register(Registry& registry) { return registry.Add<T>(name_, help_, labels_); }

 private:
  std::string name_;
  std::string help_;
  metrics::Labels labels_;
};

inline Builder<Counter> BuildCounter() { return {}; }
inline Builder<Gauge> BuildGauge() { return {}; }
inline Builder<Histogram> BuildHistogram() { return {}; }

}  // namespace linearize::metrics
