// linearize-evaluator: serves EvaluationService (Evaluate, GetReport,
// CancelEvaluation) with the shared server plumbing (TLS, tokens, health,
// reflection, /metrics; services/common), and with --scheduler also runs
// the EVALUATE stage of conversion jobs: it registers as a worker for
// EVALUATE tasks only, leases them, and completes them with their reports.
//
//   linearize-evaluator --listen 0.0.0.0:50052 --artifact-root /artifacts
//       [--scheduler scheduler:50051 --token-file worker-token]
//
// Prints "listening on HOST:PORT" once serving; with --ready-file writes
// {"port": N, "metrics_port": M, "worker_id": ID} there (worker_id once
// registered, "" without --scheduler). SIGTERM/SIGINT: the running
// evaluations end CANCELLED, a leased EVALUATE task is handed back
// (DeregisterWorker), and the process exits 0.
#include <ATen/Parallel.h>
#include <limits.h>
#include <stdlib.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/common/client_flags.h"
#include "services/common/log.h"
#include "services/common/machine_resources.h"
#include "services/common/server.h"
#include "services/common/server_flags.h"
#include "services/common/lease_loop.h"
#include "services/common/shutdown.h"
#include "services/evaluator/evaluate_task.h"
#include "services/evaluator/evaluation_service.h"

namespace {

using namespace linearize;

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "linearize-evaluator: %s\n", message.c_str());
  return code;
}

void WriteReady(const std::string& path, int port, int metrics_port, const std::string& worker) {
  if (path.empty()) return;
  std::ofstream(path + ".tmp") << "{\"port\": " << port << ", \"metrics_port\": " << metrics_port
                               << ", \"worker_id\": \"" << worker << "\"}\n";
  std::rename((path + ".tmp").c_str(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  auto signals = server::ShutdownSignals::Install();  // before any thread starts
  if (!signals.ok()) return Fail(std::string(signals.status().message()));

  CLI::App app{"linearize-evaluator: model evaluation (EvaluationService and jobs' EVALUATE stage)"};
  server::ServerFlags flags;
  flags.listen = "127.0.0.1:50052";
  flags.metrics_listen = "127.0.0.1:9402";
  server::AddServerFlags(app, flags);
  server::SchedulerClientFlags client_flags;
  client_flags.scheduler = "";
  server::AddSchedulerClientFlags(app, client_flags);
  std::string artifact_root, ready_file;
  std::vector<std::string> default_texts = {std::string(LINEARIZE_EVAL_DATA_DIR) +
                                            "/text/english.txt"};
  int threads = 0;
  double lease_wait_seconds = 30;
  app.add_option("--artifact-root", artifact_root, "directory every path of the API is relative to")
      ->envname("LINEARIZE_ARTIFACT_ROOT")
      ->required();
  CLI::Option* eval_text =
      app.add_option("--eval-text", default_texts,
                     "held-out text a job's perplexity task scores when the job has no "
                     "validation files (repeatable)")
          ->envname("LINEARIZE_EVAL_TEXT")
          ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: LibTorch's default)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--lease-wait-seconds", lease_wait_seconds, "LeaseTask long-poll length")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--ready-file", ready_file,
                 "write {\"port\": N, \"metrics_port\": M, \"worker_id\": ID} here once serving");
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<server::ServerOptions> options = server::ApplyServerFlags(flags, "evaluator");
  if (!options.ok()) return Fail(std::string(options.status().message()), 2);
  options->access_rules = {{"/linearize.v1.EvaluationService/", {server::Role::kUser}}};
  char resolved[PATH_MAX];
  if (::realpath(artifact_root.c_str(), resolved) == nullptr) {
    return Fail(absl::StrCat("--artifact-root: \"", artifact_root, "\" does not exist"), 2);
  }
  artifact_root = resolved;
  std::vector<std::string> texts;
  for (const std::string& t : default_texts) {
    if (::realpath(t.c_str(), resolved) != nullptr) {
      texts.push_back(resolved);
    } else if (eval_text->count() > 0) {
      return Fail(absl::StrCat("--eval-text: \"", t, "\" does not exist"), 2);
    } else {
      // The build tree's text is not shipped everywhere (container images).
      server::LogWarning("evaluator.no_default_text",
                         {{"path", t}, {"note", "a job's perplexity task without sources and "
                                                "validation files will fail; set --eval-text"}});
    }
  }
  default_texts = texts;
  if (threads > 0) at::set_num_threads(threads);

  // The scheduler: model lookups for Evaluate, and EVALUATE tasks.
  std::shared_ptr<grpc::Channel> scheduler_channel;
  std::unique_ptr<server::TaskAgent> agent;
  if (!client_flags.scheduler.empty()) {
    absl::StatusOr<server::TaskAgentOptions> agent_options =
        server::ApplySchedulerClientFlags(client_flags);
    if (!agent_options.ok()) return Fail(std::string(agent_options.status().message()), 2);
    auto channel = server::CreateChannel(agent_options->scheduler);
    if (!channel.ok()) return Fail(absl::StrCat("--scheduler: ", channel.status().message()), 2);
    scheduler_channel = *channel;
    v1::RegisterWorkerRequest& reg = agent_options->registration;
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    reg.set_hostname(host);
    reg.set_version(LINEARIZE_VERSION);
    const std::vector<server::GpuStatus> gpus =
        server::QueryGpus(static_cast<int>(torch::cuda::device_count()));
    *reg.mutable_resources() = server::DetectResources(gpus, threads, artifact_root);
    reg.add_kinds(v1::STAGE_EVALUATE);
    agent_options->lease_wait = absl::Seconds(lease_wait_seconds);
    auto created = server::TaskAgent::Create(*std::move(agent_options));
    if (!created.ok()) return Fail(std::string(created.status().message()), 2);
    agent = *std::move(created);
  }

  auto registry = std::make_shared<metrics::Registry>();
  evaluator::ModelResolver resolver(artifact_root, scheduler_channel);
  evaluator::ServiceOptions service_options;
  service_options.artifact_root = artifact_root;
  service_options.default_texts = default_texts;
  service_options.resolver = &resolver;
  service_options.registry = registry.get();
  evaluator::EvaluationServiceImpl service(service_options);
  auto started = server::Server::Start(*options, {&service}, registry);
  if (!started.ok()) return Fail(std::string(started.status().message()));
  std::unique_ptr<server::Server>& srv = *started;
  srv->OnDrain([&] { service.Drain(); });

  server::StopFlag stop;
  (*signals)->OnShutdown([&](std::string_view why) {
    stop.Stop(why);
    server::LogInfo("evaluator.shutdown", {{"reason", why}});
    if (agent != nullptr) agent->Stop();
    srv->Shutdown(absl::Seconds(10));
  });
  const std::string& listen = options->listen_address;
  std::cout << "listening on " << listen.substr(0, listen.rfind(':')) << ":" << srv->port()
            << std::endl;
  if (agent == nullptr) WriteReady(ready_file, srv->port(), srv->metrics_port(), "");

  // EVALUATE tasks, one at a time.
  std::thread tasks;
  if (agent != nullptr) {
    tasks = std::thread([&] {
      if (absl::Status s = agent->Register(); !s.ok()) {
        if (!absl::IsCancelled(s)) {
          server::LogError("evaluator.register_failed", {{"status", s}});
          (*signals)->Trigger("registration failed");
        }
        return;
      }
      WriteReady(ready_file, srv->port(), srv->metrics_port(), agent->worker_id());
      evaluator::EvaluateTaskContext ctx;
      ctx.artifact_root = artifact_root;
      ctx.default_texts = default_texts;
      ctx.shutting_down = [&] { return stop.stopped(); };
      ctx.service = &service;
      server::RunLeaseLoop(*agent, stop, "evaluator", [&](server::LeaseKeeper& keeper) {
        evaluator::RunEvaluateTask(keeper, ctx);
      });
    });
  }
  srv->Wait();
  if (tasks.joinable()) tasks.join();
  (*signals)->Wait();
  server::LogInfo("evaluator.stopped", {});
  return 0;
}
