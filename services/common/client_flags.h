// Command-line flags of the processes that call the scheduler as clients
// (linearize-worker, linearize-evaluator), each also settable through an
// environment variable for containers:
//   --scheduler        LINEARIZE_SCHEDULER        host:port of linearize-scheduler
//   --token            LINEARIZE_TOKEN            bearer token (worker role)
//   --token-file       LINEARIZE_TOKEN_FILE       file holding the token
//   --tls-ca           LINEARIZE_TLS_CA           CA of the scheduler's certificate: TLS
//   --tls-client-cert  LINEARIZE_TLS_CLIENT_CERT  client certificate (mutual TLS)
//   --tls-client-key   LINEARIZE_TLS_CLIENT_KEY
//   --tls-server-name  LINEARIZE_TLS_SERVER_NAME  name checked in the scheduler's certificate
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/task_agent.h"

namespace linearize::server {

struct SchedulerClientFlags {
  std::string scheduler = "127.0.0.1:50051";
  std::string token;
  std::string token_file;
  std::string tls_ca;
  std::string tls_client_cert;
  std::string tls_client_key;
  std::string tls_server_name;
};

void AddSchedulerClientFlags(CLI::App& app, SchedulerClientFlags& flags);

// The connection part of TaskAgentOptions (scheduler, token). Errors name
// the flag: an unreadable or empty --token-file, both --token and
// --token-file, a client certificate without its key.
absl::StatusOr<TaskAgentOptions> ApplySchedulerClientFlags(const SchedulerClientFlags& flags);

}  // namespace linearize::server
