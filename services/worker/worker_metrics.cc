#include "services/worker/worker_metrics.h"

namespace linearize::worker {

WorkerMetrics::WorkerMetrics(metrics::Registry& registry)
    : tokens_per_second_(metrics::BuildGauge()
                             .Name("linearize_training_tokens_per_second")
                             .Help("Training throughput of the worker's running task, tokens/s "
                                   "(0 while not training)")
                             .Register(registry)),
      gpu_memory_(metrics::BuildGauge()
                      .Name("linearize_gpu_memory_bytes")
                      .Help("Device memory in use per GPU of the worker, bytes")
                      .Register(registry)),
      tasks_(metrics::BuildCounter()
                 .Name("linearize_worker_tasks_total")
                 .Help("Tasks the worker ran, by kind and how they ended")
                 .Register(registry)) {}

void WorkerMetrics::SetWorker(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (worker_id == worker_) return;
  if (throughput_ != nullptr) tokens_per_second_.Remove(throughput_);
  worker_ = worker_id;
  throughput_ = &tokens_per_second_.Add({{"worker", worker_}});
  throughput_->Set(0);
}

void WorkerMetrics::SetTokensPerSecond(double value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (throughput_ != nullptr) throughput_->Set(value);
}

void WorkerMetrics::SetGpuMemory(int gpu, double bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  gpu_memory_.Add({{"worker", worker_}, {"gpu", std::to_string(gpu)}}).Set(bytes);
}

void WorkerMetrics::TaskEnded(const std::string& kind, const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.Add({{"worker", worker_}, {"kind", kind}, {"outcome", outcome}}).Increment();
}

}  // namespace linearize::worker
