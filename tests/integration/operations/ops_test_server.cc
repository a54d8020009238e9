// A small service process built like every linearize service (flags,
// Server::Start, shutdown on SIGTERM) for the operations integration test:
// JobService.GetJob answers NOT_FOUND for the caller's tenant, and a few of
// the platform's metrics are registered with fixed values.
//
//   ops_test_server --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
//       --tokens-file tokens --tls-cert c.pem --tls-key k.pem --ready-file ports.json
// writes {"port": N, "metrics_port": M} to the ready file once serving.
#include <fstream>
#include <iostream>

#include "linearize/v1/job_service.grpc.pb.h"
#include "services/common/auth.h"
#include "services/common/log.h"
#include "services/common/server_flags.h"
#include "services/common/shutdown.h"
#include "services/common/status.h"

namespace {

using linearize::server::PrincipalOf;
using linearize::server::ToGrpcStatus;

class JobService final : public linearize::v1::JobService::Service {
 public:
  grpc::Status GetJob(grpc::ServerContext* context, const linearize::v1::GetJobRequest* request,
                      linearize::v1::Job*) override {
    auto principal = PrincipalOf(context);
    if (!principal.ok()) return ToGrpcStatus(principal.status());
    return ToGrpcStatus(absl::NotFoundError("job_id: no job \"" + request->job_id() + "\""));
  }
};

void RegisterMetrics(linearize::metrics::Registry& registry) {
  using namespace linearize::metrics;
  auto& jobs = BuildGauge().Name("linearize_jobs").Help("Jobs by state.").Register(registry);
  jobs.Add({{"state", "queued"}}).Set(2);
  jobs.Add({{"state", "running"}}).Set(1);
  BuildGauge()
      .Name("linearize_queue_depth")
      .Help("Tasks waiting for a worker.")
      .Register(registry)
      .Add({})
      .Set(3);
  // A label value that needs every escape, to check it reaches PromQL
  // intact.
  BuildCounter()
      .Name("linearize_worker_heartbeats_total")
      .Help("Heartbeats accepted from workers.")
      .Register(registry)
      .Add({{"worker", "w \"1\" \\ ünï"}})
      .Increment(5);
}

}  // namespace

int main(int argc, char** argv) {
  auto signals = linearize::server::ShutdownSignals::Install();
  if (!signals.ok()) {
    std::cerr << signals.status() << "\n";
    return 1;
  }
  CLI::App app("ops_test_server: a minimal linearize service for integration tests");
  linearize::server::ServerFlags flags;
  flags.listen = "127.0.0.1:0";
  flags.metrics_listen = "127.0.0.1:0";
  linearize::server::AddServerFlags(app, flags);
  std::string ready_file;
  app.add_option("--ready-file", ready_file, "Where to write the bound ports as JSON");
  CLI11_PARSE(app, argc, argv);

  auto options = linearize::server::ApplyServerFlags(flags, "ops_test_server");
  if (!options.ok()) {
    std::cerr << options.status() << "\n";
    return 2;
  }
  auto registry = std::make_shared<linearize::metrics::Registry>();
  RegisterMetrics(*registry);
  JobService jobs;
  auto server = linearize::server::Server::Start(*options, {&jobs}, registry);
  if (!server.ok()) {
    linearize::server::LogError("server.failed", {{"status", server.status()}});
    return 1;
  }
  (*signals)->OnShutdown([&](std::string_view) { (*server)->Shutdown(absl::Seconds(5)); });
  if (!ready_file.empty()) {
    const std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << "{\"port\": " << (*server)->port()
                       << ", \"metrics_port\": " << (*server)->metrics_port() << "}\n";
    std::rename(tmp.c_str(), ready_file.c_str());  // readers never see half a file
  }
  (*server)->Wait();
  (*signals)->Wait();
  return 0;
}
