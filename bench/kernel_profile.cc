#include "bench/kernel_profile.h"

#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace linearize::bench {

std::vector<KernelTime> ProfileKernels(const std::function<void()>& step, int steps) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> activities = {ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  for (int i = 0; i < steps; ++i) step();
  const std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  std::map<std::string, std::pair<uint64_t, int64_t>> by_name;  // ns, count
  for (const prof::KinetoEvent& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    auto& [ns, count] = by_name[e.name()];
    ns += e.durationNs();
    ++count;
  }
  std::vector<KernelTime> rows;
  for (const auto& [name, v] : by_name) {
    rows.push_back(
        {name, 1e-3 * static_cast<double>(v.first) / steps, static_cast<double>(v.second) / steps});
  }
  std::sort(rows.begin(), rows.end(),
            [](const KernelTime& a, const KernelTime& b) { return a.us_per_step > b.us_per_step; });
  return rows;
}

}  // namespace linearize::bench
