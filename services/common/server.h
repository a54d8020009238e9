// Starts a gRPC server the way every linearize service runs:
//   - TLS when certificate files are given (mutual TLS with a client CA),
//   - bearer-token auth and per-role access rules (auth.h),
//   - grpc.health.v1 (SERVING once started, NOT_SERVING while draining) and
//     server reflection, both open without a token,
//   - request size limits,
//   - per-RPC metrics, process metrics and the service's own metrics on
//     /metrics (HTTPS with the same certificate when TLS is on).
//
//   auto signals = ShutdownSignals::Install();     // first in main (shutdown.h)
//   auto options = ApplyServerFlags(flags, "scheduler");   // server_flags.h
//   JobServiceImpl jobs(...);
//   auto server = Server::Start(*options, {&jobs}, registry);
//   (*signals)->OnShutdown([&](auto) { (*server)->Shutdown(absl::Seconds(30)); });
//   (*server)->Wait();
// tests/integration/operations/ops_test_server.cc is a complete main.
#pragma once

#include <grpcpp/server.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/exposer.h"
#include "common/metrics/registry.h"
#include "services/common/auth.h"
#include "services/common/tls.h"

namespace linearize::server {

struct ServerOptions {
  // gRPC address, "host:port"; port 0 picks a free one (Server::port()).
  std::string listen_address = "127.0.0.1:0";
  // /metrics address (metrics::ExposerOptions syntax); empty: no endpoint.
  std::string metrics_listen_address{};
  // cert_file + key_file -> TLS on every port; ca_file -> clients must
  // present a certificate from that CA (mutual TLS, e.g. workers).
  TlsFiles tls{};
  // Tokens file (tokens.h); empty -> auth off (auth.h).
  std::string tokens_file{};
  // Which roles may call what (auth.h).
  std::vector<AccessRule> access_rules{};
  // Largest request and response message, in bytes.
  int max_receive_message_bytes = 16 << 20;
  int max_send_message_bytes = 64 << 20;
  // Names this server in its start and stop log lines.
  std::string service_name = "linearize";
};

class Server {
 public:
  // Builds and starts the server with `services` (not owned; they must
  // outlive it) and serves `registry` on /metrics next to the per-RPC and
  // process metrics. Errors: INVALID_ARGUMENT / NOT_FOUND for bad options
  // or files (naming them), UNAVAILABLE when an address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       const std::vector<grpc::Service*>& services,
                                                       std::shared_ptr<metrics::Registry> registry);
  ~Server();  // Shutdown(0) if still running

  int port() const { return port_; }
  // 0 without a metrics endpoint.
  int metrics_port() const { return metrics_port_; }
  bool tls() const { return tls_; }
  bool auth() const { return auth_; }
  metrics::Registry& registry() { return *registry_; }
  grpc::Server* grpc_server() { return server_.get(); }

  // Called at the start of Shutdown, in the order added, before the gRPC
  // server stops taking calls: end streams with UNAVAILABLE, hand back
  // leases, stop background loops. Not thread-safe with Shutdown.
  void OnDrain(std::function<void()> hook);

  // Health NOT_SERVING, drain hooks, then no new calls; calls still running
  // after `grace` are cancelled. Idempotent; thread-safe.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  Server() = default;

  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<metrics::Registry> registry_;
  std::shared_ptr<metrics::Collectable> process_collector_;
  std::unique_ptr<metrics::Exposer> exposer_;
  std::vector<std::function<void()>> drain_hooks_;
  std::once_flag shutdown_once_;
  std::string service_name_;
  int port_ = 0;
  int metrics_port_ = 0;
  bool tls_ = false;
  bool auth_ = false;
};

}  // namespace linearize::server
