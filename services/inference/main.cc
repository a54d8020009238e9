// linearize-inference: serves InferenceService with the shared server
// plumbing (TLS, tokens, health, reflection, /metrics; services/common).
// Sessions live in --state-dir (spilled and persisted states); models load
// from --artifact-root on request, or with --load at start. SIGTERM/SIGINT
// drain: running generations end CANCELLED, every session is written to
// disk, then the process exits 0.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "services/common/log.h"
#include "services/common/server.h"
#include "services/common/server_flags.h"
#include "services/common/shutdown.h"
#include "services/inference/inference_service.h"

namespace {

using namespace linearize;

// Keeps the gauges current and writes changed sessions every `period`.
void Housekeeping(inference::ModelRegistry& models, inference::SessionStore& sessions,
                  inference::InferenceMetrics& m, absl::Duration period, absl::Notification& stop) {
  absl::Time last_persist = absl::Now();
  while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(500))) {
    int64_t running = 0, waiting = 0;
    for (const auto& model : models.List()) {
      const runtime::Engine::Stats s = model->engine->stats();
      running += s.running;
      waiting += s.waiting;
    }
    m.sessions_running->Set(static_cast<double>(running));
    m.sessions_waiting->Set(static_cast<double>(waiting));
    const inference::SessionStore::Usage u = sessions.usage();
    m.resident_bytes->Set(static_cast<double>(u.resident_bytes));
    m.spilled_bytes->Set(static_cast<double>(u.spilled_bytes));
    m.resident_sessions->Set(static_cast<double>(u.resident));
    m.spilled_sessions->Set(static_cast<double>(u.spilled));
    if (absl::Now() - last_persist >= period) {
      sessions.Sweep();
      if (absl::Status s = sessions.Persist(/*all=*/false); !s.ok()) {
        server::LogWarning("persist_failed", {{"error", std::string(s.message())}});
      }
      last_persist = absl::Now();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto signals = server::ShutdownSignals::Install();
  if (!signals.ok()) {
    std::fprintf(stderr, "linearize-inference: %s\n", std::string(signals.status().message()).c_str());
    return 1;
  }
  CLI::App app{"linearize-inference: streaming generation with persistent sessions"};
  server::ServerFlags flags;
  flags.listen = "127.0.0.1:50053";
  flags.metrics_listen = "127.0.0.1:9403";
  server::AddServerFlags(app, flags);
  std::string artifact_root = ".";
  std::string state_dir;
  std::string ready_file;
  int64_t budget = 1LL << 30;
  int64_t max_batch = 64;
  double persist_seconds = 10;
  double idle_timeout_seconds = 1800;
  std::vector<std::string> loads;
  app.add_option("--artifact-root", artifact_root, "root of model paths and snapshot files")
      ->envname("LINEARIZE_ARTIFACT_ROOT");
  app.add_option("--state-dir", state_dir, "where sessions are spilled and persisted")
      ->required()
      ->envname("LINEARIZE_STATE_DIR");
  app.add_option("--memory-budget-bytes", budget, "bytes of resident session state");
  app.add_option("--max-batch", max_batch, "generations stepped together");
  app.add_option("--persist-seconds", persist_seconds, "how often changed sessions are written");
  app.add_option("--idle-timeout-seconds", idle_timeout_seconds, "default session idle timeout");
  app.add_option("--load", loads, "NAME=PATH of a model to load at start (repeatable)");
  app.add_option("--ready-file", ready_file, "write {\"port\": N, \"metrics_port\": M} here once serving");
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<server::ServerOptions> options = server::ApplyServerFlags(flags, "inference");
  if (!options.ok()) {
    std::fprintf(stderr, "linearize-inference: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  options->max_receive_message_bytes = 256 << 20;  // restored snapshots
  options->max_send_message_bytes = 256 << 20;

  inference::ModelRegistry models(runtime::EngineOptions{.max_batch = max_batch});
  auto registry = std::make_shared<metrics::Registry>();
  inference::InferenceMetrics metrics(*registry);
  inference::SessionStore::Options store_options;
  store_options.dir = state_dir;
  store_options.memory_budget_bytes = budget;
  store_options.default_idle_timeout = absl::Seconds(idle_timeout_seconds);
  store_options.on_transition = [family = metrics.session_transitions](inference::Lifecycle from,
                                                                       inference::Lifecycle to) {
    family->Add({{"from", std::string(inference::LifecycleName(from))},
                 {"to", std::string(inference::LifecycleName(to))}})
        .Increment();
  };
  inference::SessionStore sessions(store_options, models);
  for (const std::string& spec : loads) {
    const size_t eq = spec.find('=');
    const std::string name = eq == std::string::npos ? inference::DefaultModelName(spec) : spec.substr(0, eq);
    const std::string path = eq == std::string::npos ? spec : spec.substr(eq + 1);
    auto loaded = models.Load(name, path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "linearize-inference: --load %s: %s\n", spec.c_str(),
                   std::string(loaded.status().message()).c_str());
      return 1;
    }
    (*loaded)->engine->SetStepObserver([h = metrics.batch_size](int64_t n) { h->Observe(double(n)); });
    server::LogInfo("model_loaded", {{"name", name}, {"path", path}});
  }
  if (absl::Status s = sessions.Open(); !s.ok()) {
    std::fprintf(stderr, "linearize-inference: --state-dir: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  inference::ServiceOptions service_options;
  service_options.artifact_root = artifact_root;
  service_options.metrics = &metrics;
  inference::InferenceServiceImpl service(service_options, models, sessions);
  auto started = server::Server::Start(*options, {&service}, registry);
  if (!started.ok()) {
    std::fprintf(stderr, "linearize-inference: %s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<server::Server>& srv = *started;
  srv->OnDrain([&] { service.Drain(); });
  (*signals)->OnShutdown([&](auto) { srv->Shutdown(absl::Seconds(10)); });
  if (!ready_file.empty()) {
    std::ofstream(ready_file + ".tmp") << "{\"port\": " << srv->port()
                                       << ", \"metrics_port\": " << srv->metrics_port() << "}\n";
    std::rename((ready_file + ".tmp").c_str(), ready_file.c_str());
  }
  absl::Notification stop;
  std::thread housekeeping(Housekeeping, std::ref(models), std::ref(sessions), std::ref(metrics),
                           absl::Seconds(persist_seconds), std::ref(stop));
  srv->Wait();
  stop.Notify();
  housekeeping.join();
  if (absl::Status s = sessions.Persist(/*all=*/true); !s.ok()) {
    server::LogError("persist_failed", {{"error", std::string(s.message())}});
    return 1;
  }
  server::LogInfo("sessions_persisted", {});
  return 0;
}
