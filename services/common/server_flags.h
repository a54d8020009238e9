// The command-line flags every service shares (CLI11), each also settable
// through an environment variable for containers:
//   --listen            LINEARIZE_LISTEN           gRPC address
//   --metrics-listen    LINEARIZE_METRICS_LISTEN   /metrics address ("" = none)
//   --tls-cert          LINEARIZE_TLS_CERT         PEM certificate chain
//   --tls-key           LINEARIZE_TLS_KEY          PEM private key
//   --tls-client-ca     LINEARIZE_TLS_CLIENT_CA    CA for client certificates (mTLS)
//   --tokens-file       LINEARIZE_TOKENS_FILE      bearer tokens (tokens.h); unset = auth off
//   --max-request-bytes LINEARIZE_MAX_REQUEST_BYTES
//   --log-level         LINEARIZE_LOG_LEVEL        debug|info|warning|error
//   --log-format        LINEARIZE_LOG_FORMAT       logfmt|json
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/server.h"

namespace linearize::server {

struct ServerFlags {
  // Defaults shown in --help; a main may change them before AddServerFlags.
  std::string listen = "0.0.0.0:50051";
  std::string metrics_listen = "0.0.0.0:9400";
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tokens_file;
  int max_request_bytes = 16 << 20;
  std::string log_level = "info";
  std::string log_format = "logfmt";
};

void AddServerFlags(CLI::App& app, ServerFlags& flags);

// Checks the flags, applies the log settings (SetLogLevel, SetLogFormat,
// SetLogService(service_name)) and returns the server options.
// INVALID_ARGUMENT naming the flag for bad values.
absl::StatusOr<ServerOptions> ApplyServerFlags(const ServerFlags& flags,
                                               const std::string& service_name);

}  // namespace linearize::server
