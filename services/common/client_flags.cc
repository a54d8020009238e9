#include "services/common/client_flags.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"

namespace linearize::server {

void AddSchedulerClientFlags(CLI::App& app, SchedulerClientFlags& flags) {
  app.add_option("--scheduler", flags.scheduler, "linearize-scheduler address host:port")
      ->envname("LINEARIZE_SCHEDULER")
      ->capture_default_str();
  app.add_option("--token", flags.token, "bearer token for the scheduler (worker role)")
      ->envname("LINEARIZE_TOKEN");
  app.add_option("--token-file", flags.token_file, "file holding the bearer token")
      ->envname("LINEARIZE_TOKEN_FILE");
  app.add_option("--tls-ca", flags.tls_ca, "PEM CA of the scheduler's certificate: use TLS")
      ->envname("LINEARIZE_TLS_CA");
  app.add_option("--tls-client-cert", flags.tls_client_cert,
                 "PEM client certificate for mutual TLS")
      ->envname("LINEARIZE_TLS_CLIENT_CERT");
  app.add_option("--tls-client-key", flags.tls_client_key, "PEM key of --tls-client-cert")
      ->envname("LINEARIZE_TLS_CLIENT_KEY");
  app.add_option("--tls-server-name", flags.tls_server_name,
                 "name to check in the scheduler's certificate (default: from --scheduler)")
      ->envname("LINEARIZE_TLS_SERVER_NAME");
}

absl::StatusOr<TaskAgentOptions> ApplySchedulerClientFlags(const SchedulerClientFlags& flags) {
  TaskAgentOptions o;
  if (flags.scheduler.empty()) return absl::InvalidArgumentError("--scheduler: must not be empty");
  o.scheduler.target = flags.scheduler;
  o.scheduler.tls_server_name = flags.tls_server_name;
  if ((flags.tls_client_cert.empty()) != (flags.tls_client_key.empty())) {
    return absl::InvalidArgumentError(
        "--tls-client-cert and --tls-client-key: give both or neither");
  }
  if (!flags.tls_client_cert.empty() && flags.tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls-client-cert: needs --tls-ca (TLS)");
  }
  o.scheduler.tls = TlsFiles{flags.tls_client_cert, flags.tls_client_key, flags.tls_ca};
  if (!flags.token.empty() && !flags.token_file.empty()) {
    return absl::InvalidArgumentError("--token and --token-file: give at most one");
  }
  o.token = flags.token;
  if (!flags.token_file.empty()) {
    std::ifstream in(flags.token_file);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("--token-file: cannot read \"", flags.token_file, "\""));
    }
    std::stringstream text;
    text << in.rdbuf();
    o.token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (o.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-file: \"", flags.token_file, "\" is empty"));
    }
  }
  return o;
}

}  // namespace linearize::server
