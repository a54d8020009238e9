// GPU time per kernel of a repeated step, from torch's Kineto profiler
// (CUPTI activity records): where a decode step's time goes, kernel by kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace linearize::bench {

struct KernelTime {
  std::string name;
  double us_per_step = 0;        // summed GPU time of this kernel per step
  double launches_per_step = 0;  // how many times it ran per step
};

// Runs `step` `steps` times under the profiler (the caller warms it up
// first) and returns the GPU activities grouped by name, the most costly
// first. Empty when the profiler recorded no GPU activity (no CUPTI).
std::vector<KernelTime> ProfileKernels(const std::function<void()>& step, int steps);

}  // namespace linearize::bench
