// The `linearize` commands for conversion jobs, served by
// linearize-scheduler's JobService:
//   linearize submit --teacher PATH --recipe lolcats|lizard|linear [--watch] ...
//   linearize watch JOB          live progress; exit 0 on SUCCEEDED, 1 otherwise
//   linearize list [--state S]   the tenant's jobs, newest first
//   linearize get JOB            one job in full
//   linearize cancel JOB
//   linearize logs JOB [--follow]
//   linearize models             published models (SUCCEEDED jobs' outputs)
// Every command takes --server (default $LINEARIZE_SERVER or
// 127.0.0.1:50051), --token ($LINEARIZE_TOKEN) and --tls-ca
// ($LINEARIZE_TLS_CA: TLS, checking the server against that CA). A failed
// call returns a status whose message is "<CODE>: <the server's message>",
// which main prints as "linearize: <CODE>: <message>".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace CLI { class App; }

namespace linearize::cli {

// Where the scheduler is and how to reach it.
struct SchedulerConnection {
  std::string address = "127.0.0.1:50051";
  std::string token;
  std::string tls_ca;
  std::string tls_server_name;  // overrides the name checked in the certificate
};

struct SubmitArgs {
  // A checkpoint under the server's artifact root; "model:NAME" names a
  // registry model, "job:ID" the output of an earlier job.
  std::string teacher;
  std::string recipe;
  int64_t tokens = 0;  // 0: the recipe's default budgets
  int32_t seq_len = 0;     // tokens per training sequence; 0: the server's default
  int32_t batch_size = 0;  // sequences per step; 0: the server's default
  // > 0: evaluate only perplexity on this many held-out tokens (instead of
  // the server's default tasks, which include passkey recall).
  int64_t eval_tokens = 0;
  std::vector<std::string> data;  // none: self-distillation
  std::string name;               // output_model_name; "": job-<id>
  std::string display_name;
  int32_t priority = 0;
  std::string request_id;
  int32_t gpus = 0;  // per task; 0: server default (1)
  bool cpu_only = false;
  bool skip_evaluation = false;
  bool watch = false;
};

struct JobCommandArgs {
  SchedulerConnection server;
  SubmitArgs submit;
  std::string job_id;
  std::vector<std::string> states;
  int32_t page_size = 0;
  std::string page_token;
  std::string reason;
  std::string min_severity;
  bool follow = false;
  bool json = false;
  bool include_logs = false;
};

// Registers the job subcommands on `app`; returns them. `args` must outlive
// parsing and the run.
std::vector<CLI::App*> AddJobCommands(CLI::App& app, JobCommandArgs& args);

// Runs whichever job subcommand was parsed (OK if none was).
absl::Status RunJobCommand(const std::vector<CLI::App*>& commands, const JobCommandArgs& args);

}  // namespace linearize::cli
