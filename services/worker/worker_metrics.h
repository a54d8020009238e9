// The worker's own /metrics series (next to the process metrics):
//   linearize_training_tokens_per_second{worker}   recent training throughput
//                                                  (0 while not training)
//   linearize_gpu_memory_bytes{worker,gpu}         device memory in use per GPU
//   linearize_worker_tasks_total{worker,kind,outcome}  tasks run, by how they ended
// `worker` is the scheduler's worker_id, known once registered. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics/counter.h"
#include "common/metrics/family.h"
#include "common/metrics/gauge.h"
#include "common/metrics/registry.h"

namespace linearize::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(metrics::Registry& registry);

  // Names the series; call after (each) registration.
  void SetWorker(const std::string& worker_id);
  void SetTokensPerSecond(double value);
  void SetGpuMemory(int gpu, double bytes);
  // kind: "attention_transfer", ...; outcome: "completed", "failed",
  // "abandoned" (lease lost or job cancelled), "handed_back" (shutdown).
  void TaskEnded(const std::string& kind, const std::string& outcome);

 private:
  metrics::Family<metrics::Gauge>& tokens_per_second_;
  metrics::Family<metrics::Gauge>& gpu_memory_;
  metrics::Family<metrics::Counter>& tasks_;
  std::mutex mu_;
  std::string worker_;
  metrics::Gauge* throughput_ = nullptr;
};

}  // namespace linearize::worker
