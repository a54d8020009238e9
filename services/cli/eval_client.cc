#include "services/cli/eval_client.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "linearize/v1/evaluation_service.grpc.pb.h"
#include "services/cli/rpc_error.h"
#include "services/common/client.h"

namespace linearize::cli {
namespace {

// The CLI's task list as the service's tasks (names as the local report's
// sections; the server fills in its defaults).
absl::StatusOr<v1::EvaluateRequest> BuildRequest(const EvalArgs& a) {
  v1::EvaluateRequest req;
  if (a.model.empty()) return absl::InvalidArgumentError("eval --server: MODEL is required");
  req.mutable_model()->set_artifact_path(a.model);
  if (!a.teacher.empty()) req.mutable_teacher()->set_artifact_path(a.teacher);
  const std::set<std::string> tasks(a.tasks.begin(), a.tasks.end());
  if (tasks.contains("speed")) {
    return absl::InvalidArgumentError(
        "eval --server: --tasks speed measures the host it runs on; run it locally");
  }
  if (tasks.contains("ppl") || tasks.contains("kl")) {
    if (a.texts.empty()) {
      return absl::InvalidArgumentError(
          "eval --server: ppl and kl need --text (paths under the server's artifact root)");
    }
    v1::EvaluationTask* t = req.add_tasks();
    t->set_name("perplexity");
    for (const std::string& text : a.texts) t->mutable_perplexity()->add_sources()->set_path(text);
    t->mutable_perplexity()->set_sequence_length(static_cast<int32_t>(a.chunk));
  }
  if (tasks.contains("recall")) {
    for (int64_t pairs : a.recall_pairs) {
      v1::EvaluationTask* t = req.add_tasks();
      t->set_name(absl::StrCat("mqar-", pairs, "-pairs"));
      v1::RecallTask* r = t->mutable_recall();
      r->set_kind(v1::RecallTask::KIND_MULTI_QUERY);
      for (int64_t len : a.recall_lengths) r->add_context_lengths(static_cast<int32_t>(len));
      r->set_num_pairs(static_cast<int32_t>(pairs));
      r->set_num_samples(static_cast<int32_t>(a.recall_samples));
    }
  }
  if (tasks.contains("passkey")) {
    v1::EvaluationTask* t = req.add_tasks();
    t->set_name("passkey");
    v1::RecallTask* r = t->mutable_recall();
    r->set_kind(v1::RecallTask::KIND_PASSKEY);
    for (int64_t len : a.passkey_lengths) r->add_context_lengths(static_cast<int32_t>(len));
    r->set_num_samples(static_cast<int32_t>(a.passkey_samples));
  }
  if (tasks.contains("mc")) {
    if (a.mc_files.empty()) {
      return absl::InvalidArgumentError(
          "eval --server: mc needs --mc-tasks (JSONL paths under the server's artifact root)");
    }
    v1::EvaluationTask* t = req.add_tasks();
    t->set_name("multiple-choice");
    for (const std::string& f : a.mc_files) t->mutable_multiple_choice()->add_paths(f);
    t->mutable_multiple_choice()->set_num_shots(static_cast<int32_t>(a.fewshot));
    t->mutable_multiple_choice()->set_limit(static_cast<int32_t>(a.mc_limit));
  }
  if (req.tasks_size() == 0) return absl::InvalidArgumentError("eval --server: no tasks");
  return req;
}

}  // namespace

absl::Status RunEvalOnServer(const EvalArgs& args) {
  absl::StatusOr<v1::EvaluateRequest> req = BuildRequest(args);
  if (!req.ok()) return req.status();
  server::ClientOptions options;
  options.target = args.server;
  options.tls.ca_file = args.tls_ca;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = server::CreateChannel(options);
  if (!channel.ok()) return WithCodeName(channel.status());
  auto stub = v1::EvaluationService::NewStub(*channel);
  grpc::ClientContext ctx;
  server::AttachBearerToken(&ctx, args.token);
  auto stream = stub->Evaluate(&ctx, *req);
  v1::EvaluationEvent event;
  v1::EvaluationReport report;
  bool have_report = false;
  while (stream->Read(&event)) {
    if (event.has_started()) {
      std::cerr << "evaluation " << event.started().report_id() << ": "
                << event.started().task_names_size() << " tasks\n";
    } else if (event.has_progress()) {
      const v1::EvaluationProgress& p = event.progress();
      std::cerr << "  " << p.task_name() << ": " << p.items_done() << "/" << p.items_total()
                << "\n";
    } else if (event.has_task_done()) {
      const v1::EvaluationTaskResult& t = event.task_done();
      std::cerr << "  " << t.name() << ": " << v1::EvaluationState_Name(t.state())
                << (t.error().empty() ? "" : " (" + t.error() + ")") << "\n";
    } else if (event.has_report()) {
      report = event.report();
      have_report = true;
    }
  }
  if (grpc::Status s = stream->Finish(); !s.ok()) return RpcError(s);
  if (!have_report) return absl::InternalError("the evaluator's stream ended without a report");
  // The metrics of every task, sorted by name (the server's report files hold the rest).
  std::cout << "# Evaluation " << report.report_id() << " ("
            << v1::EvaluationState_Name(report.state()) << ")\n\n| task | metric | value |\n"
            << "|---|---|---:|\n";
  for (const v1::EvaluationTaskResult& t : report.tasks()) {
    const std::map<std::string, double> sorted(t.metrics().begin(), t.metrics().end());
    for (const auto& [name, value] : sorted) {
      std::cout << "| " << t.name() << " | " << name << " | " << value << " |\n";
    }
  }
  std::cout << "\nOn the server: " << report.markdown_path() << ", " << report.json_path() << "\n";
  std::string json;
  google::protobuf::util::JsonPrintOptions json_options;
  json_options.add_whitespace = true;
  if (!google::protobuf::util::MessageToJsonString(report, &json, json_options).ok()) {
    return absl::InternalError("the report does not convert to JSON");
  }
  ::mkdir(args.out.c_str(), 0755);
  std::ofstream out(args.out + "/report.json", std::ios::binary);
  out << json << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(args.out, "/report.json: write failed"));
  std::cerr << "wrote " << args.out << "/report.json\n";
  if (report.state() != v1::EVALUATION_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(
        absl::StrCat("evaluation ", report.report_id(), " ended ",
                     v1::EvaluationState_Name(report.state())));
  }
  return absl::OkStatus();
}

}  // namespace linearize::cli
