// Prints an exposition with every metric type and awkward label values, for
// `promtool check metrics` (the ctest metrics_promtool_check).
#include <iostream>

#include "common/metrics/process_collector.h"
#include "common/metrics/registry.h"
#include "common/metrics/text_serializer.h"

int main() {
  using namespace linearize::metrics;
  Registry registry;
  auto& jobs = BuildGauge().Name("linearize_jobs").Help("Jobs by state.").Register(registry);
  jobs.Add({{"state", "queued"}}).Set(2);
  jobs.Add({{"state", "running"}}).Set(1);
  BuildCounter()
      .Name("linearize_worker_heartbeats_total")
      .Help("Heartbeats \"accepted\" from workers.\nBackslash: \\")
      .Register(registry)
      .Add({{"worker", "quote\" backslash\\ newline\n ünïcode"}})
      .Increment(5);
  auto& durations = BuildHistogram()
                        .Name("linearize_task_duration_seconds")
                        .Help("Task durations.")
                        .Register(registry);
  auto& h = durations.Add({{"kind", "finetune"}}, ExponentialBuckets(0.1, 10, 4));
  for (double v : {0.05, 0.5, 5.0, 5000.0}) h.Observe(v);
  durations.Add({{"kind", "publish"}}, ExponentialBuckets(0.1, 10, 4));
  std::vector<MetricFamily> families = registry.Collect();
  for (MetricFamily& f : ProcessCollector().Collect()) families.push_back(std::move(f));
  std::cout << TextSerializer().Serialize(families);
  return 0;
}
