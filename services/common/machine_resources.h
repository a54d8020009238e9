// What this machine offers the scheduler (WorkerResources): GPUs (counted
// by the caller's LibTorch, described by nvidia-smi), CPU cores, memory,
// scratch disk. No LibTorch here: torch-linked mains pass
// torch::cuda::device_count().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "linearize/v1/worker_service.pb.h"

namespace linearize::server {

struct GpuStatus {
  int index = 0;
  std::string name;
  int64_t memory_total_bytes = 0;
  int64_t memory_used_bytes = 0;
  std::string compute_capability;  // "9.0"
  std::string uuid;
};

// The first `visible_devices` GPUs (LibTorch's device count, which honours
// CUDA_VISIBLE_DEVICES), each as nvidia-smi describes it; empty when there
// are none, or when nvidia-smi cannot describe them all (logged).
std::vector<GpuStatus> QueryGpus(int visible_devices);

// cpu_threads > 0 caps the cores offered; scratch is the free space of
// `scratch_dir` (0 when unknown).
v1::WorkerResources DetectResources(const std::vector<GpuStatus>& gpus, int cpu_threads,
                                    const std::string& scratch_dir);

}  // namespace linearize::server
