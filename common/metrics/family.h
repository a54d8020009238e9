// A metric family: one name, one help text, one type, and one series per
// label set (prometheus-cpp's Family<T>). Thread-safe; the references that
// Add returns stay valid until Remove or the family's destruction.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/metrics/labels.h"
#include "common/metrics/metric_family.h"

namespace linearize::metrics {

// The type-independent part, so a Registry can hold families of all types.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type, Labels constant_labels);
  virtual ~FamilyBase() = default;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const Labels& constant_labels() const { return constant_labels_; }

  // A snapshot of every series, in label order.
  virtual MetricFamily Collect() const = 0;

 protected:
  // Aborts when a label name is invalid, repeats a constant label, or is
  // "le" in a histogram family.
  void CheckLabels(const Labels& labels) const;
  void AddLabels(const Labels& labels, ClientMetric& metric) const;

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
  Labels constant_labels_;
};

template <typename T>
class Family : public FamilyBase {
 public:
  Family(std::string name, std::string help, Labels constant_labels)
      : FamilyBase(std::move(name), std::move(help), T::kType, std::move(constant_labels)) {}

  // The series for `labels`, created from `args` (a Histogram's bucket
  // boundaries) on first use; later calls with the same labels return the
  // same series and ignore `args`.
  template <typename... Args>
  T& Add(const Labels& labels, Args&&... args) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = metrics_.find(labels);
    if (it != metrics_.end()) return *it->second;
    CheckLabels(labels);
    auto metric = std::make_unique<T>(std::forward<Args>(args)...);
    T& ref = *metric;
    metrics_.emplace(labels, std::move(metric));
    return ref;
  }

  // Drops a series (e.g. of a worker that left). No-op for unknown metrics.
  void Remove(T* metric) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = metrics_.begin(); it != metrics_.end(); ++it) {
      if (it->second.get() == metric) {
        metrics_.erase(it);
        return;
      }
    }
  }

  bool Has(const Labels& labels) const {
    std::lock_guard<std::mutex> lock(mu_);
    return metrics_.count(labels) > 0;
  }

  MetricFamily Collect() const override {
    MetricFamily family;
    family.name = name();
    family.help = help();
    family.type = type();
    std::lock_guard<std::mutex> lock(mu_);
    family.metric.reserve(metrics_.size());
    for (const auto& [labels, metric] : metrics_) {
      ClientMetric m = metric->Collect();
      AddLabels(labels, m);
      family.metric.push_back(std::move(m));
    }
    return family;
  }

 private:
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> metrics_;
};

}  // namespace linearize::metrics
