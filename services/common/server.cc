#include "services/common/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/metrics/process_collector.h"
#include "services/common/call_metrics.h"
#include "services/common/log.h"

namespace linearize::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      const std::vector<grpc::Service*>& services,
                                                      std::shared_ptr<metrics::Registry> registry) {
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("listen: must not be empty (e.g. \"0.0.0.0:50051\")");
  }
  if (options.max_receive_message_bytes <= 0 || options.max_send_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max message bytes: must be positive, got receive ", options.max_receive_message_bytes,
        " and send ", options.max_send_message_bytes));
  }
  if (registry == nullptr) registry = std::make_shared<metrics::Registry>();

  AuthOptions auth;
  auth.rules = options.access_rules;
  if (!options.tokens_file.empty()) {
    auto tokens = TokenTable::Load(options.tokens_file);
    if (!tokens.ok()) return tokens.status();
    auth.tokens = std::move(*tokens);
  }
  auto credentials = MakeServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();

  std::unique_ptr<Server> server(new Server());
  server->registry_ = registry;
  server->service_name_ = options.service_name;
  server->tls_ = !options.tls.cert_file.empty();
  server->auth_ = auth.tokens != nullptr;

  static std::once_flag plugins_once;
  std::call_once(plugins_once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *credentials, &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeAuthInterceptorFactory(std::move(auth)));
  interceptors.push_back(MakeCallMetricsInterceptorFactory(*registry));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->server_.reset();
    return absl::UnavailableError(absl::StrCat("listen: cannot serve gRPC on \"",
                                               options.listen_address,
                                               "\" (address in use or not local?)"));
  }

  if (!options.metrics_listen_address.empty()) {
    auto exposer = metrics::Exposer::Create({.listen_address = options.metrics_listen_address,
                                             .tls_cert_file = options.tls.cert_file,
                                             .tls_key_file = options.tls.key_file});
    if (!exposer.ok()) return exposer.status();  // ~Server stops the gRPC server
    server->exposer_ = std::move(*exposer);
    server->process_collector_ = std::make_shared<metrics::ProcessCollector>();
    server->exposer_->RegisterCollectable(registry);
    server->exposer_->RegisterCollectable(server->process_collector_);
    server->metrics_port_ = server->exposer_->GetListeningPorts().at(0);
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  LogInfo("server.started", {{"server", options.service_name},
                             {"listen", options.listen_address},
                             {"port", server->port_},
                             {"metrics_port", server->metrics_port_},
                             {"tls", server->tls_},
                             {"mtls", !options.tls.ca_file.empty()},
                             {"auth", server->auth_}});
  return server;
}

Server::~Server() {
  Shutdown(absl::ZeroDuration());
  exposer_.reset();
}

void Server::OnDrain(std::function<void()> hook) { drain_hooks_.push_back(std::move(hook)); }

void Server::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;  // Start failed before the server ran
  std::call_once(shutdown_once_, [&] {
    LogInfo("server.draining",
            {{"server", service_name_}, {"grace_seconds", absl::ToDoubleSeconds(grace)}});
    server_->GetHealthCheckService()->SetServingStatus(false);
    for (auto& hook : drain_hooks_) hook();
    server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
    LogInfo("server.stopped", {{"server", service_name_}});
  });
}

void Server::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace linearize::server
