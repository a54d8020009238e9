// Channels to linearize services for clients (the CLI, workers, tests),
// with the same TLS files and bearer tokens the servers use.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "services/common/tls.h"

namespace linearize::server {

struct ClientOptions {
  std::string target{};  // "host:port"
  // ca_file set -> TLS; cert_file + key_file -> client certificate (mTLS).
  TlsFiles tls{};
  // Overrides the name checked against the server certificate (tests with
  // a certificate for "localhost" reached by IP, say).
  std::string tls_server_name{};
  int max_receive_message_bytes = 64 << 20;
};

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(const ClientOptions& options);

// Adds "authorization: Bearer <token>" to a call; no-op for an empty token.
void AttachBearerToken(grpc::ClientContext* context, std::string_view token);

}  // namespace linearize::server
