// linearize-scheduler: the scheduler process. Serves JobService and
// WorkerService from a durable job store with the shared server plumbing
// (services/common: TLS, bearer tokens, health, reflection, /metrics,
// structured logs); holds no state of its own, so it can be killed and
// restarted at any time and run as several replicas on one PostgreSQL store.
//
//   linearize-scheduler --listen 0.0.0.0:50051 --metrics-listen 0.0.0.0:9400
//       --store sqlite:///var/lib/linearize/jobs.db --artifact-root /srv/artifacts
//       [--tokens-file tokens --tls-cert cert.pem --tls-key key.pem]
//
// Prints "listening on HOST:PORT" on stdout once serving (port 0 picks a
// free port) and, with --ready-file, writes {"port": N, "metrics_port": M}
// there. SIGINT/SIGTERM drain (watch streams end with UNAVAILABLE, long
// polls return) and stop; the process then exits 0.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/time/time.h"
#include "services/common/log.h"
#include "services/common/server_flags.h"
#include "services/common/shutdown.h"
#include "services/scheduler/scheduler_server.h"

namespace {

void Fail(const std::string& message) {
  std::fprintf(stderr, "linearize-scheduler: %s\n", message.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace linearize;
  auto signals = server::ShutdownSignals::Install();  // before any thread starts
  if (!signals.ok()) {
    Fail(std::string(signals.status().message()));
    return 1;
  }
  CLI::App app{"linearize-scheduler: conversion jobs, their tasks and the workers that run them"};
  server::ServerFlags flags;
  flags.listen = "127.0.0.1:50051";
  flags.metrics_listen = "127.0.0.1:9400";
  server::AddServerFlags(app, flags);
  scheduler::SchedulerOptions options;
  std::string ready_file;
  double lease_seconds = 60, heartbeat_seconds = 10, retry_backoff_seconds = 10;
  double drain_seconds = 10;
  int max_attempts = 3, max_running = 4, max_queued = 100;
  app.add_option("--store,--database", options.store_url,
                 "job store: sqlite:///path/to/jobs.db, a path, or postgresql://...")
      ->envname("LINEARIZE_STORE")
      ->required();
  app.add_option("--artifact-root", options.artifact_root,
                 "directory every path of the API is relative to")
      ->envname("LINEARIZE_ARTIFACT_ROOT")
      ->required();
  app.add_option("--ready-file", ready_file,
                 "write {\"port\": N, \"metrics_port\": M} here once serving");
  app.add_option("--lease-seconds", lease_seconds, "lease duration, renewed by each heartbeat")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--heartbeat-seconds", heartbeat_seconds,
                 "heartbeat interval told to workers; 3 missed intervals lapse a worker")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  app.add_option("--retry-backoff-seconds", retry_backoff_seconds,
                 "delay before a task's 2nd attempt (doubles per attempt)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--max-attempts", max_attempts, "attempts per task before its job fails")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--max-running-jobs-per-tenant", max_running, "0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--max-queued-jobs-per-tenant", max_queued, "0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--drain-seconds", drain_seconds,
                 "on SIGTERM, how long calls in flight may still run")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  CLI11_PARSE(app, argc, argv);
  if (heartbeat_seconds >= lease_seconds) {
    Fail("--heartbeat-seconds (" + std::to_string(heartbeat_seconds) +
         ") must be shorter than --lease-seconds (" + std::to_string(lease_seconds) + ")");
    return 2;
  }
  absl::StatusOr<server::ServerOptions> server_options =
      server::ApplyServerFlags(flags, "scheduler");
  if (!server_options.ok()) {
    Fail(std::string(server_options.status().message()));
    return 2;
  }
  options.server = *server_options;
  options.store.lease_duration = absl::Seconds(lease_seconds);
  options.store.heartbeat_interval = absl::Seconds(heartbeat_seconds);
  options.store.retry_backoff = absl::Seconds(retry_backoff_seconds);
  options.store.max_attempts = max_attempts;
  options.store.max_running_jobs_per_tenant = max_running;
  options.store.max_queued_jobs_per_tenant = max_queued;
  options.sweep_interval = std::min(absl::Seconds(1), absl::Seconds(heartbeat_seconds));

  auto scheduler = scheduler::Scheduler::Start(options);
  if (!scheduler.ok()) {
    server::LogError("scheduler.start_failed", {{"status", scheduler.status()}});
    Fail(std::string(scheduler.status().message()));
    return 1;
  }
  scheduler::Scheduler& s = **scheduler;
  (*signals)->OnShutdown([&](std::string_view reason) {
    server::LogInfo("scheduler.shutdown", {{"reason", reason}});
    s.Shutdown(absl::Seconds(drain_seconds));
  });
  const std::string& listen = options.server.listen_address;
  std::cout << "listening on " << listen.substr(0, listen.rfind(':')) << ":" << s.port()
            << std::endl;
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << "{\"port\": " << s.port() << ", \"metrics_port\": " << s.metrics_port()
                       << "}\n";
    std::rename(tmp.c_str(), ready_file.c_str());  // readers never see half a file
  }
  s.Wait();
  (*signals)->Wait();
  server::LogInfo("scheduler.stopped");
  return 0;
}
