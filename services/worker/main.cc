// linearize-worker: runs the scheduler's conversion tasks (attention
// transfer, fine-tuning, publishing) on this machine, one at a time.
//
//   linearize-worker --scheduler scheduler:50051 --artifact-root /artifacts
//       [--token-file worker-token --tls-ca ca.pem] [--metrics-listen 0.0.0.0:9400]
//
// Registers with its resources, then leases a task (long poll), runs it
// while heartbeating its progress and latest checkpoint, and completes or
// fails it; a heartbeat answered CANCEL or LEASE_LOST stops the task
// without committing anything. SIGTERM/SIGINT: the running task stops at
// its next step (checkpoint written and reported), the worker deregisters
// (its lease is re-queued without counting an attempt) and exits 0.
// Serves /metrics (linearize_training_tokens_per_second{worker},
// linearize_gpu_memory_bytes{worker,gpu}, process metrics); with
// --ready-file, writes {"metrics_port": M, "worker_id": "..."} once
// registered.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/exposer.h"
#include "common/metrics/process_collector.h"
#include "services/common/client_flags.h"
#include "services/common/log.h"
#include "services/common/machine_resources.h"
#include "services/common/lease_loop.h"
#include "services/common/shutdown.h"
#include "services/worker/task_runner.h"
#include "services/worker/worker_metrics.h"

namespace {

using namespace linearize;

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "linearize-worker: %s\n", message.c_str());
  return code;
}

absl::StatusOr<std::vector<v1::Stage>> ParseKinds(const std::vector<std::string>& names) {
  std::vector<v1::Stage> kinds;
  for (const std::string& n : names) {
    if (n == "attention_transfer") kinds.push_back(v1::STAGE_ATTENTION_TRANSFER);
    else if (n == "finetune") kinds.push_back(v1::STAGE_FINETUNE);
    else if (n == "publish") kinds.push_back(v1::STAGE_PUBLISH);
    else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--kinds: \"", n, "\" is not a task this worker runs (attention_transfer, finetune, "
          "publish; evaluate runs in linearize-evaluator)"));
    }
  }
  if (kinds.empty()) return absl::InvalidArgumentError("--kinds: name at least one kind");
  return kinds;
}

}  // namespace

int main(int argc, char** argv) {
  auto signals = server::ShutdownSignals::Install();  // before any thread starts
  if (!signals.ok()) return Fail(std::string(signals.status().message()));

  CLI::App app{"linearize-worker: runs conversion tasks leased from linearize-scheduler"};
  server::SchedulerClientFlags client_flags;
  server::AddSchedulerClientFlags(app, client_flags);
  std::string artifact_root, metrics_listen = "0.0.0.0:9400", metrics_cert, metrics_key;
  std::string log_level = "info", log_format = "logfmt", ready_file;
  std::vector<std::string> kind_names = {"attention_transfer", "finetune", "publish"};
  std::vector<std::string> labels;
  int threads = 0;
  double lease_wait_seconds = 30;
  app.add_option("--artifact-root", artifact_root,
                 "directory every task path is relative to (shared with the scheduler)")
      ->envname("LINEARIZE_ARTIFACT_ROOT")
      ->required();
  app.add_option("--metrics-listen", metrics_listen, "/metrics address host:port; empty: none")
      ->envname("LINEARIZE_METRICS_LISTEN")
      ->capture_default_str();
  app.add_option("--tls-cert", metrics_cert, "PEM certificate: serve /metrics over HTTPS")
      ->envname("LINEARIZE_TLS_CERT");
  app.add_option("--tls-key", metrics_key, "PEM key of --tls-cert")->envname("LINEARIZE_TLS_KEY");
  app.add_option("--kinds", kind_names, "task kinds to take: attention_transfer,finetune,publish")
      ->delimiter(',')
      ->envname("LINEARIZE_WORKER_KINDS")
      ->capture_default_str();
  app.add_option("--label", labels, "KEY=VALUE label of this worker (repeatable)");
  app.add_option("--threads", threads, "CPU threads for training (0: LibTorch's default)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--lease-wait-seconds", lease_wait_seconds, "LeaseTask long-poll length")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--ready-file", ready_file,
                 "write {\"metrics_port\": M, \"worker_id\": ID} here once registered");
  app.add_option("--log-level", log_level, "debug, info, warning or error")
      ->envname("LINEARIZE_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "logfmt or json")
      ->envname("LINEARIZE_LOG_FORMAT")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto level = server::ParseLogLevel(log_level);
  if (!level.ok()) return Fail(absl::StrCat("--", level.status().message()), 2);
  auto format = server::ParseLogFormat(log_format);
  if (!format.ok()) return Fail(absl::StrCat("--", format.status().message()), 2);
  server::SetLogLevel(*level);
  server::SetLogFormat(*format);
  server::SetLogService("worker");
  char resolved[PATH_MAX];
  if (::realpath(artifact_root.c_str(), resolved) == nullptr) {
    return Fail(absl::StrCat("--artifact-root: \"", artifact_root, "\" does not exist"), 2);
  }
  artifact_root = resolved;
  absl::StatusOr<std::vector<v1::Stage>> kinds = ParseKinds(kind_names);
  if (!kinds.ok()) return Fail(std::string(kinds.status().message()), 2);
  absl::StatusOr<server::TaskAgentOptions> agent_options =
      server::ApplySchedulerClientFlags(client_flags);
  if (!agent_options.ok()) return Fail(std::string(agent_options.status().message()), 2);
  if (threads > 0) at::set_num_threads(threads);

  // /metrics.
  auto registry = std::make_shared<metrics::Registry>();
  auto process = std::make_shared<metrics::ProcessCollector>();
  worker::WorkerMetrics worker_metrics(*registry);
  std::unique_ptr<metrics::Exposer> exposer;
  int metrics_port = 0;
  if (!metrics_listen.empty()) {
    auto created = metrics::Exposer::Create(
        {.listen_address = metrics_listen, .tls_cert_file = metrics_cert,
         .tls_key_file = metrics_key, .num_threads = 1});
    if (!created.ok()) {
      return Fail(absl::StrCat("--metrics-listen: ", created.status().message()));
    }
    exposer = *std::move(created);
    exposer->RegisterCollectable(registry);
    exposer->RegisterCollectable(process);
    metrics_port = exposer->GetListeningPorts().empty() ? 0 : exposer->GetListeningPorts()[0];
  }

  // Registration.
  const std::vector<server::GpuStatus> gpus =
      server::QueryGpus(static_cast<int>(torch::cuda::device_count()));
  v1::RegisterWorkerRequest& reg = agent_options->registration;
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  reg.set_hostname(host);
  reg.set_version(LINEARIZE_VERSION);
  *reg.mutable_resources() = server::DetectResources(gpus, threads, artifact_root);
  for (const std::string& l : labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(l, absl::MaxSplits('=', 1));
    if (kv.first.empty()) return Fail(absl::StrCat("--label: expected KEY=VALUE, got \"", l, "\""), 2);
    (*reg.mutable_resources()->mutable_labels())[kv.first] = kv.second;
  }
  for (v1::Stage k : *kinds) reg.add_kinds(k);
  agent_options->lease_wait = absl::Seconds(lease_wait_seconds);
  auto agent = server::TaskAgent::Create(*std::move(agent_options));
  if (!agent.ok()) return Fail(std::string(agent.status().message()), 2);
  server::TaskAgent& scheduler = **agent;

  server::StopFlag stop;
  (*signals)->OnShutdown([&](std::string_view why) {
    stop.Stop(why);
    server::LogInfo("worker.shutdown", {{"reason", why}});
    scheduler.Stop();
  });

  if (absl::Status s = scheduler.Register(); !s.ok()) {
    if (absl::IsCancelled(s)) return 0;
    return Fail(absl::StrCat("registering with ", client_flags.scheduler, ": ", s.message()));
  }
  worker_metrics.SetWorker(scheduler.worker_id());
  if (!ready_file.empty()) {
    std::ofstream(ready_file + ".tmp") << "{\"metrics_port\": " << metrics_port
                                       << ", \"worker_id\": \"" << scheduler.worker_id()
                                       << "\"}\n";
    std::rename((ready_file + ".tmp").c_str(), ready_file.c_str());
  }

  // GPU memory, refreshed for /metrics.
  std::thread gpu_thread;
  if (!gpus.empty()) {
    gpu_thread = std::thread([&] {
      do {
        for (const server::GpuStatus& g : server::QueryGpus(static_cast<int>(gpus.size()))) {
          worker_metrics.SetGpuMemory(g.index, static_cast<double>(g.memory_used_bytes));
        }
      } while (!stop.WaitFor(absl::Seconds(10)));
    });
  }

  worker::RunContext context;
  context.artifact_root = artifact_root;
  context.shutting_down = [&] { return stop.stopped(); };
  context.metrics = &worker_metrics;
  server::RunLeaseLoop(scheduler, stop, "worker", [&](server::LeaseKeeper& keeper) {
    worker_metrics.SetWorker(scheduler.worker_id());  // a lapse re-registers under a new id
    worker::RunTask(keeper, context);
  });
  if (gpu_thread.joinable()) gpu_thread.join();
  server::LogInfo("worker.stopped", {{"reason", stop.reason()}});
  (*signals)->Wait();
  return 0;
}
