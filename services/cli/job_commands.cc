#include "services/cli/job_commands.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "services/cli/rpc_error.h"
#include "services/cli/job_format.h"
#include "services/common/client.h"

namespace linearize::cli {
namespace {

using Stub = v1::JobService::Stub;

absl::StatusOr<std::unique_ptr<Stub>> Connect(const SchedulerConnection& c) {
  server::ClientOptions options;
  options.target = c.address;
  options.tls.ca_file = c.tls_ca;
  options.tls_server_name = c.tls_server_name;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = server::CreateChannel(options);
  if (!channel.ok()) return WithCodeName(channel.status());
  return v1::JobService::NewStub(*channel);
}

// A context with the bearer token; unary calls get a deadline so that the
// command never hangs on a server that does not answer.
std::unique_ptr<grpc::ClientContext> Context(const SchedulerConnection& c, bool stream = false) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  server::AttachBearerToken(ctx.get(), c.token);
  if (!stream) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return ctx;
}

// Names the CLI knows map to enum values; anything else is sent as the
// unset value (or the number given), so that the server's validation
// message, which names the field and the valid values, is what the user
// sees.
template <typename Enum>
Enum ParseEnum(std::string text, const std::string& prefix,
               std::initializer_list<std::pair<const char*, Enum>> aliases,
               bool (*is_valid)(int), const std::string& (*name)(Enum)) {
  for (const auto& [alias, value] : aliases) {
    if (absl::EqualsIgnoreCase(text, alias)) return value;
  }
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) return static_cast<Enum>(number);
  std::string upper = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(upper, prefix)) upper = prefix + upper;
  for (int v = 1; v < 64; ++v) {
    if (is_valid(v) && name(static_cast<Enum>(v)) == upper) return static_cast<Enum>(v);
  }
  return static_cast<Enum>(0);
}

v1::RecipeKind ParseRecipe(const std::string& text) {
  return ParseEnum<v1::RecipeKind>(text, "RECIPE_KIND_",
                                   {{"lolcats", v1::RECIPE_KIND_LOLCATS},
                                    {"lizard", v1::RECIPE_KIND_LIZARD},
                                    {"linear", v1::RECIPE_KIND_LINEAR_BASELINE}},
                                   v1::RecipeKind_IsValid,
                                   [](v1::RecipeKind k) -> const std::string& {
                                     return v1::RecipeKind_Name(k);
                                   });
}

v1::JobState ParseState(const std::string& text) {
  return ParseEnum<v1::JobState>(text, "JOB_STATE_", {{"canceled", v1::JOB_STATE_CANCELLED}},
                                 v1::JobState_IsValid, [](v1::JobState s) -> const std::string& {
                                   return v1::JobState_Name(s);
                                 });
}

v1::LogSeverity ParseSeverity(const std::string& text) {
  if (text.empty()) return v1::LOG_SEVERITY_UNSPECIFIED;
  return ParseEnum<v1::LogSeverity>(text, "LOG_SEVERITY_", {{"warn", v1::LOG_SEVERITY_WARNING}},
                                    v1::LogSeverity_IsValid,
                                    [](v1::LogSeverity s) -> const std::string& {
                                      return v1::LogSeverity_Name(s);
                                    });
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

bool IsTerminal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

v1::SubmitConversionRequest SubmitRequest(const SubmitArgs& a) {
  v1::SubmitConversionRequest r;
  v1::ConversionSpec* spec = r.mutable_spec();
  if (absl::StartsWith(a.teacher, "model:")) {
    spec->mutable_teacher()->set_model_name(a.teacher.substr(6));
  } else if (absl::StartsWith(a.teacher, "job:")) {
    spec->mutable_teacher()->set_job_id(a.teacher.substr(4));
  } else {
    spec->mutable_teacher()->set_artifact_path(a.teacher);
  }
  v1::Recipe* recipe = spec->mutable_recipe();
  recipe->set_kind(ParseRecipe(a.recipe));
  if (a.tokens > 0) {
    // As `linearize convert`: half per stage, all to stage 2 for the
    // baseline, which has nothing to transfer.
    if (recipe->kind() == v1::RECIPE_KIND_LINEAR_BASELINE) {
      recipe->mutable_finetune()->mutable_training()->set_token_budget(a.tokens);
    } else {
      recipe->mutable_attention_transfer()->mutable_training()->set_token_budget(a.tokens / 2);
      recipe->mutable_finetune()->mutable_training()->set_token_budget(a.tokens - a.tokens / 2);
    }
  }
  for (v1::TrainingParams* t : {recipe->mutable_attention_transfer()->mutable_training(),
                                 recipe->mutable_finetune()->mutable_training()}) {
    if (a.seq_len > 0) t->set_sequence_length(a.seq_len);
    if (a.batch_size > 0) t->set_batch_size(a.batch_size);
  }
  for (const std::string& path : a.data) spec->mutable_data()->add_train()->set_path(path);
  if (a.data.empty()) spec->mutable_data()->mutable_self_distillation()->set_enabled(true);
  spec->set_output_model_name(a.name);
  spec->set_skip_evaluation(a.skip_evaluation);
  if (a.eval_tokens > 0) {
    v1::PerplexityTask* p = spec->add_evaluation_tasks()->mutable_perplexity();
    p->set_max_tokens(a.eval_tokens);
    p->set_sequence_length(static_cast<int32_t>(std::min<int64_t>(a.eval_tokens, 1024)));
  }
  spec->mutable_budget()->set_gpus_per_task(a.gpus);
  spec->mutable_budget()->set_cpu_only(a.cpu_only);
  r.set_display_name(a.display_name);
  r.set_priority(a.priority);
  r.set_request_id(a.request_id);
  return r;
}

// Follows a job until it ends: OK for SUCCEEDED, an error naming the
// reason for FAILED and CANCELLED. A stream the server ends with
// UNAVAILABLE (shutdown, restart) is watched again, for up to a minute of
// failed attempts; a fresh snapshot means nothing is missed.
absl::Status Watch(Stub& stub, const JobCommandArgs& args, const std::string& job_id) {
  WatchPrinter printer(stdout, ::isatty(STDOUT_FILENO) != 0);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  request.set_include_logs(args.include_logs);
  request.set_min_log_severity(ParseSeverity(args.min_severity));
  v1::Job job;
  absl::Duration backoff = absl::Milliseconds(250);
  absl::Time unavailable_since = absl::InfiniteFuture();
  for (;;) {
    auto ctx = Context(args.server, /*stream=*/true);
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = stub.WatchJob(ctx.get(), request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      unavailable_since = absl::InfiniteFuture();
      backoff = absl::Milliseconds(250);
      if (event.has_snapshot()) job = event.snapshot();
      if (event.has_state_change()) job = event.state_change().job();
      printer.Print(event);
    }
    const grpc::Status status = reader->Finish();
    if (status.ok() && IsTerminal(job.state())) break;
    // This client never cancels its call: CANCELLED means the server went
    // away mid-call (a restart), as UNAVAILABLE does.
    if (!status.ok() && status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        status.error_code() != grpc::StatusCode::CANCELLED) {
      return RpcError(status);
    }
    if (!status.ok()) {
      const absl::Time now = absl::Now();
      if (unavailable_since == absl::InfiniteFuture()) unavailable_since = now;
      if (now - unavailable_since > absl::Seconds(60)) return RpcError(status);
      printer.EndBar();
      std::fprintf(stderr, "linearize: %s; watching again\n", status.error_message().c_str());
    }
    // Ended early (UNAVAILABLE, or OK before a terminal event): back off.
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  printer.EndBar();
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    std::printf("job %s SUCCEEDED: model %s at %s\n", job.job_id().c_str(),
                job.model_name().c_str(), job.artifact_path().c_str());
    return absl::OkStatus();
  }
  if (job.state() == v1::JOB_STATE_FAILED) {
    const v1::JobFailure& f = job.failure();
    const std::string code = v1::FailureCode_Name(f.code());
    return absl::AbortedError(absl::StrCat(
        "job ", job.job_id(), " FAILED (", code.size() > 13 ? code.substr(13) : code,
        f.stage() == v1::STAGE_UNSPECIFIED ? "" : absl::StrCat(", ", StageLabel(f.stage())),
        "): ", f.message()));
  }
  return absl::CancelledError(absl::StrCat("job ", job.job_id(), " CANCELLED",
                                           job.status_message().empty()
                                               ? std::string()
                                               : absl::StrCat(" (", job.status_message(), ")")));
}

absl::Status RunSubmit(Stub& stub, const JobCommandArgs& args) {
  v1::Job job;
  auto ctx = Context(args.server);
  if (grpc::Status s = stub.SubmitConversion(ctx.get(), SubmitRequest(args.submit), &job);
      !s.ok()) {
    return RpcError(s);
  }
  std::printf("%s\n", job.job_id().c_str());
  std::fflush(stdout);
  if (!args.submit.watch) return absl::OkStatus();
  return Watch(stub, args, job.job_id());
}

absl::Status RunList(Stub& stub, const JobCommandArgs& args) {
  v1::ListJobsRequest request;
  for (const std::string& s : args.states) request.add_states(ParseState(s));
  request.set_page_size(args.page_size);
  request.set_page_token(args.page_token);
  v1::ListJobsResponse response;
  auto ctx = Context(args.server);
  if (grpc::Status s = stub.ListJobs(ctx.get(), request, &response); !s.ok()) return RpcError(s);
  if (args.json) {
    std::printf("%s", ToJson(response).c_str());
    return absl::OkStatus();
  }
  std::printf("%s\n", JobTableHeader().c_str());
  for (const v1::Job& job : response.jobs()) std::printf("%s\n", JobTableRow(job).c_str());
  if (!response.next_page_token().empty()) {
    std::fprintf(stderr, "more: linearize list --page-token %s\n",
                 response.next_page_token().c_str());
  }
  return absl::OkStatus();
}

absl::Status RunGet(Stub& stub, const JobCommandArgs& args) {
  v1::GetJobRequest request;
  request.set_job_id(args.job_id);
  v1::Job job;
  auto ctx = Context(args.server);
  if (grpc::Status s = stub.GetJob(ctx.get(), request, &job); !s.ok()) return RpcError(s);
  std::printf("%s", args.json ? ToJson(job).c_str() : DescribeJob(job).c_str());
  return absl::OkStatus();
}

absl::Status RunCancel(Stub& stub, const JobCommandArgs& args) {
  v1::CancelJobRequest request;
  request.set_job_id(args.job_id);
  request.set_reason(args.reason);
  v1::Job job;
  auto ctx = Context(args.server);
  if (grpc::Status s = stub.CancelJob(ctx.get(), request, &job); !s.ok()) return RpcError(s);
  std::printf("job %s %s\n", job.job_id().c_str(), JobStateName(job.state()).c_str());
  return absl::OkStatus();
}

// Pages through the stored lines; with --follow keeps polling (the token
// stays set while the job can still write) until the job has ended.
absl::Status RunLogs(Stub& stub, const JobCommandArgs& args) {
  v1::GetJobLogsRequest request;
  request.set_job_id(args.job_id);
  request.set_min_severity(ParseSeverity(args.min_severity));
  request.set_page_size(args.page_size);
  request.set_page_token(args.page_token);
  for (;;) {
    v1::GetJobLogsResponse response;
    auto ctx = Context(args.server);
    if (grpc::Status s = stub.GetJobLogs(ctx.get(), request, &response); !s.ok()) {
      return RpcError(s);
    }
    for (const v1::LogLine& line : response.lines()) {
      std::printf("%s\n", LogLineText(line).c_str());
    }
    std::fflush(stdout);
    if (response.next_page_token().empty()) return absl::OkStatus();
    request.set_page_token(response.next_page_token());
    if (response.lines().empty()) {
      if (!args.follow) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

// Published models: the outputs of the tenant's SUCCEEDED jobs.
absl::Status RunModels(Stub& stub, const JobCommandArgs& args) {
  v1::ListJobsRequest request;
  request.add_states(v1::JOB_STATE_SUCCEEDED);
  request.set_page_size(1000);
  std::printf("%-32s %-28s %-8s %-21s %s\n", "MODEL", "JOB", "RECIPE", "PUBLISHED", "ARTIFACT");
  for (;;) {
    v1::ListJobsResponse response;
    auto ctx = Context(args.server);
    if (grpc::Status s = stub.ListJobs(ctx.get(), request, &response); !s.ok()) {
      return RpcError(s);
    }
    for (const v1::Job& job : response.jobs()) {
      if (job.model_name().empty()) continue;
      std::printf("%-32s %-28s %-8s %-21s %s\n", job.model_name().c_str(), job.job_id().c_str(),
                  RecipeLabel(job.spec().recipe().kind()).c_str(),
                  TimeText(job.end_time()).c_str(), job.artifact_path().c_str());
    }
    if (response.next_page_token().empty()) return absl::OkStatus();
    request.set_page_token(response.next_page_token());
  }
}

void AddConnectionFlags(CLI::App* cmd, SchedulerConnection& c) {
  cmd->add_option("--server", c.address, "linearize-scheduler address host:port")
      ->envname("LINEARIZE_SERVER")
      ->capture_default_str();
  cmd->add_option("--token", c.token, "bearer token")->envname("LINEARIZE_TOKEN");
  cmd->add_option("--tls-ca", c.tls_ca, "PEM CA of the server's certificate: use TLS")
      ->envname("LINEARIZE_TLS_CA");
  cmd->add_option("--tls-server-name", c.tls_server_name,
                  "name to check in the server's certificate instead of the address's host");
}

CLI::App* JobCommand(CLI::App& app, JobCommandArgs& args, const std::string& name,
                     const std::string& help) {
  CLI::App* cmd = app.add_subcommand(name, help);
  AddConnectionFlags(cmd, args.server);
  return cmd;
}

void AddJobArg(CLI::App* cmd, JobCommandArgs& args) {
  cmd->add_option("job", args.job_id, "job id (as submit printed it)")->required();
}

}  // namespace

std::vector<CLI::App*> AddJobCommands(CLI::App& app, JobCommandArgs& args) {
  SubmitArgs& s = args.submit;
  CLI::App* submit = JobCommand(app, args, "submit",
                                "Submit a conversion job to linearize-scheduler; prints its id");
  submit->add_option("--teacher", s.teacher,
                     "teacher checkpoint under the server's artifact root (HF directory or "
                     ".gguf); model:NAME for a registry model, job:ID for a job's output")
      ->required();
  submit->add_option("--recipe", s.recipe, "lolcats | lizard | linear")->required();
  submit->add_option("--seq-len", s.seq_len, "tokens per training sequence; 0: the server's default");
  submit->add_option("--batch-size", s.batch_size, "sequences per step; 0: the server's default");
  submit->add_option("--eval-tokens", s.eval_tokens,
                     "evaluate only perplexity on this many held-out tokens (quick; default: "
                     "the server's tasks, passkey recall included)");
  submit->add_option("--tokens", s.tokens,
                     "training tokens over both stages (half each); 0: the recipe's default");
  submit->add_option("--data", s.data,
                     "training files or directories under the artifact root (.jsonl, .json, "
                     ".txt); none: self-distillation from the teacher");
  submit->add_option("--name", s.name, "name of the published model ([a-z0-9._-]; default "
                                       "job-<id>)");
  submit->add_option("--display-name", s.display_name, "free-form name for people");
  submit->add_option("--priority", s.priority, "-100..100; higher runs first");
  submit->add_option("--request-id", s.request_id,
                     "idempotency key: repeating a submit with it returns the same job");
  submit->add_option("--gpus", s.gpus, "GPUs per training task (0: 1)");
  submit->add_flag("--cpu-only", s.cpu_only, "run on CPU workers only (tiny models, tests)");
  submit->add_flag("--skip-evaluation", s.skip_evaluation, "skip the EVALUATE stage");
  submit->add_flag("--watch", s.watch, "follow the job until it ends (as `linearize watch`)");
  submit->add_flag("--logs", args.include_logs, "with --watch, show the job's log lines too");

  CLI::App* watch = JobCommand(app, args, "watch",
                               "Follow a job live; exits 0 when it SUCCEEDED, 1 when it "
                               "FAILED or was CANCELLED");
  AddJobArg(watch, args);
  watch->add_flag("--logs", args.include_logs, "show the job's log lines too");
  watch->add_option("--severity", args.min_severity, "with --logs: debug|info|warning|error");

  CLI::App* list = JobCommand(app, args, "list", "List your jobs, newest first");
  list->add_option("--state", args.states,
                   "only jobs in this state (queued|running|succeeded|failed|cancelled; "
                   "repeatable)");
  list->add_option("--page-size", args.page_size, "jobs per page (default 50, at most 1000)");
  list->add_option("--page-token", args.page_token, "the page a previous list pointed to");
  list->add_flag("--json", args.json, "print the response as JSON");

  CLI::App* get = JobCommand(app, args, "get", "Show one job");
  AddJobArg(get, args);
  get->add_flag("--json", args.json, "print the job as JSON");

  CLI::App* cancel = JobCommand(app, args, "cancel", "Cancel a queued or running job");
  AddJobArg(cancel, args);
  cancel->add_option("--reason", args.reason, "why, for the job's log");

  CLI::App* logs = JobCommand(app, args, "logs", "Print a job's log lines");
  AddJobArg(logs, args);
  logs->add_flag("-f,--follow", args.follow, "keep printing new lines until the job ends");
  logs->add_option("--severity", args.min_severity, "debug|info|warning|error (at least)");
  logs->add_option("--page-size", args.page_size, "lines per call (default 500)");

  CLI::App* models =
      JobCommand(app, args, "models", "List the models your jobs published");
  return {submit, watch, list, get, cancel, logs, models};
}

absl::Status RunJobCommand(const std::vector<CLI::App*>& commands, const JobCommandArgs& args) {
  using Run = absl::Status (*)(Stub&, const JobCommandArgs&);
  const Run runs[] = {RunSubmit, [](Stub& stub, const JobCommandArgs& a) {
                        return Watch(stub, a, a.job_id);
                      },
                      RunList,   RunGet, RunCancel, RunLogs, RunModels};
  for (size_t i = 0; i < commands.size() && i < std::size(runs); ++i) {
    if (!commands[i]->parsed()) continue;
    absl::StatusOr<std::unique_ptr<Stub>> stub = Connect(args.server);
    if (!stub.ok()) return stub.status();
    return runs[i](**stub, args);
  }
  return absl::OkStatus();
}

}  // namespace linearize::cli
