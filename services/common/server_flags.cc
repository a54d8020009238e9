#include "services/common/server_flags.h"

#include "absl/strings/str_cat.h"
#include "services/common/log.h"

namespace linearize::server {

void AddServerFlags(CLI::App& app, ServerFlags& flags) {
  app.add_option("--listen", flags.listen, "gRPC listen address host:port (port 0: pick one)")
      ->envname("LINEARIZE_LISTEN")
      ->capture_default_str();
  app.add_option("--metrics-listen", flags.metrics_listen,
                 "Prometheus /metrics address host:port; empty: no endpoint")
      ->envname("LINEARIZE_METRICS_LISTEN")
      ->capture_default_str();
  app.add_option("--tls-cert", flags.tls_cert, "PEM certificate chain: TLS on every port")
      ->envname("LINEARIZE_TLS_CERT");
  app.add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert")
      ->envname("LINEARIZE_TLS_KEY");
  app.add_option("--tls-client-ca", flags.tls_client_ca,
                 "PEM CA bundle: require client certificates from it (mutual TLS)")
      ->envname("LINEARIZE_TLS_CLIENT_CA");
  app.add_option("--tokens-file", flags.tokens_file,
                 "Bearer tokens, one \"<token> <tenant> <role>\" per line; unset: auth off")
      ->envname("LINEARIZE_TOKENS_FILE");
  app.add_option("--max-request-bytes", flags.max_request_bytes,
                 "Largest request message accepted, in bytes")
      ->envname("LINEARIZE_MAX_REQUEST_BYTES")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "debug, info, warning or error")
      ->envname("LINEARIZE_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", flags.log_format, "logfmt or json")
      ->envname("LINEARIZE_LOG_FORMAT")
      ->capture_default_str();
}

absl::StatusOr<ServerOptions> ApplyServerFlags(const ServerFlags& flags,
                                               const std::string& service_name) {
  auto level = ParseLogLevel(flags.log_level);
  if (!level.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", level.status().message()));
  }
  auto format = ParseLogFormat(flags.log_format);
  if (!format.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", format.status().message()));
  }
  if (flags.max_request_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-request-bytes: must be positive, got ", flags.max_request_bytes));
  }
  SetLogLevel(*level);
  SetLogFormat(*format);
  SetLogService(service_name);

  ServerOptions options;
  options.service_name = service_name;
  options.listen_address = flags.listen;
  options.metrics_listen_address = flags.metrics_listen;
  options.tls = TlsFiles{flags.tls_cert, flags.tls_key, flags.tls_client_ca};
  options.tokens_file = flags.tokens_file;
  options.max_receive_message_bytes = flags.max_request_bytes;
  return options;
}

}  // namespace linearize::server
