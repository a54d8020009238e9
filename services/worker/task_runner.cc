#include "services/worker/task_runner.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/convert/block_merge.h"
#include "common/convert/fs_util.h"
#include "common/convert/pipeline.h"
#include "nlohmann/json.hpp"
#include "services/common/log.h"
#include "services/worker/artifact_files.h"
#include "services/worker/spec_options.h"

namespace linearize::worker {
namespace {

using server::LeaseKeeper;

constexpr char kTransferStage[] = "attention_transfer";
constexpr char kFinetuneStage[] = "finetune";

std::string StageKindName(v1::Stage kind) {
  switch (kind) {
    case v1::STAGE_ATTENTION_TRANSFER: return "attention_transfer";
    case v1::STAGE_FINETUNE: return "finetune";
    case v1::STAGE_EVALUATE: return "evaluate";
    case v1::STAGE_PUBLISH: return "publish";
    default: return "unspecified";
  }
}

void SetSeconds(double seconds, google::protobuf::Duration* d) {
  const int64_t ns = static_cast<int64_t>(seconds * 1e9);
  d->set_seconds(ns / 1000000000);
  d->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

// Bad inputs fail the job; anything else may pass on another attempt.
Outcome ReportFailure(LeaseKeeper& keeper, const absl::Status& status, const std::string& what) {
  v1::FailureCode code = v1::FAILURE_CODE_INTERNAL;
  bool retryable = true;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      code = v1::FAILURE_CODE_INVALID_INPUT;
      retryable = false;
      break;
    default:
      break;
  }
  const std::string message = absl::StrCat(what, ": ", status.message());
  server::LogError("task.failed", {{"task_id", keeper.task().task_id()},
                                   {"code", v1::FailureCode_Name(code)},
                                   {"retryable", retryable},
                                   {"error", message}});
  keeper.Log(v1::LOG_SEVERITY_ERROR, message);
  absl::StatusOr<v1::FailTaskResponse> r = keeper.Fail(code, message, retryable);
  if (!r.ok()) {
    server::LogWarning("task.fail_refused",
                       {{"task_id", keeper.task().task_id()}, {"status", r.status()}});
  }
  return Outcome::kFailed;
}

Outcome ReportComplete(LeaseKeeper& keeper, v1::TaskOutputs outputs) {
  const std::string path = outputs.output_path();
  absl::Status s = keeper.Complete(std::move(outputs));
  if (!s.ok()) {
    server::LogWarning("task.complete_refused",
                       {{"task_id", keeper.task().task_id()}, {"status", s}});
    return keeper.should_stop() || absl::IsFailedPrecondition(s) ? Outcome::kAbandoned
                                                                 : Outcome::kFailed;
  }
  server::LogInfo("task.completed", {{"task_id", keeper.task().task_id()},
                                     {"kind", StageKindName(keeper.task().kind())},
                                     {"output_path", path}});
  return Outcome::kCompleted;
}

// The checkpoint directory `dir` if it holds a complete checkpoint, else
// the previous one a run killed mid-swap left as <dir>.old, else nothing.
std::optional<std::string> CompleteCheckpoint(const std::string& dir) {
  if (Exists(dir + "/state.json")) return dir;
  if (Exists(dir + ".old/state.json")) return dir + ".old";
  return std::nullopt;
}

struct CheckpointState {
  int stage = 0;  // 1, 2, or 3 (trained, export left)
  int64_t step = 0;
};

absl::StatusOr<CheckpointState> ReadCheckpointState(const std::string& dir) {
  absl::StatusOr<std::string> text = convert::ReadFile(dir + "/state.json");
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("stage") || !j.contains("step")) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/state.json: not a pipeline checkpoint"));
  }
  CheckpointState s;
  try {
    s.stage = j.at("stage").get<int>();
    s.step = j.at("step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/state.json: ", e.what()));
  }
  return s;
}

// Copies the checkpoint `from` into <out_abs>/checkpoint; returns its state.
absl::StatusOr<CheckpointState> TakeCheckpoint(const std::string& from, const std::string& out_abs) {
  if (absl::Status s = convert::MakeDirs(out_abs); !s.ok()) return s;
  const std::string to = out_abs + "/checkpoint";
  if (absl::Status s = convert::RemoveTree(to); !s.ok()) return s;
  if (absl::Status s = CopyTree(from, to); !s.ok()) return s;
  return ReadCheckpointState(to);
}

// Runs Convert for a task, turning its progress into heartbeats and
// stopping it when the lease ends, the worker shuts down, the loss
// diverges or (stop_after_transfer) stage 1 is done.
class ConvertDriver {
 public:
  enum class Stop { kNone, kTransferDone, kLease, kShutdown, kDiverged };

  ConvertDriver(LeaseKeeper& keeper, const RunContext& context, convert::ConvertOptions options,
                bool stop_after_transfer)
      : keeper_(keeper),
        context_(context),
        options_(std::move(options)),
        stop_after_transfer_(stop_after_transfer),
        rel_out_(keeper.task().output_path()),
        tokens_per_step_(TokensPerStep(options_)) {}

  absl::StatusOr<convert::ConvertResult> Run() {
    absl::StatusOr<convert::ConvertResult> r = convert::Convert(
        options_, [this](const convert::ProgressEvent& e) { return OnEvent(e); });
    NoteCheckpoint();
    if (context_.metrics != nullptr) context_.metrics->SetTokensPerSecond(0);
    return r;
  }

  Stop stop() const { return stop_; }
  const v1::StageProgress& last_progress() const { return progress_; }
  std::optional<double> last_validation() const { return validation_; }
  double last_loss() const { return loss_; }
  int64_t steps_run() const { return steps_run_; }

 private:
  bool OnEvent(const convert::ProgressEvent& e) {
    if (e.stage != stage_) {
      keeper_.Log(v1::LOG_SEVERITY_INFO, absl::StrCat("pipeline stage ", e.stage),
                  {{"step", absl::StrCat(e.step)}, {"total", absl::StrCat(e.total)}});
      stage_ = e.stage;
    }
    const bool training = e.stage == kTransferStage || e.stage == kFinetuneStage;
    if (training && e.total > 0) {
      ++steps_run_;
      keeper_.SetTokensProcessed(steps_run_ * tokens_per_step_);
      if (steps_run_ == 1) {
        server::LogInfo("task.first_step", {{"task_id", keeper_.task().task_id()},
                                            {"stage", e.stage},
                                            {"step", e.step},
                                            {"total", e.total}});
        keeper_.Log(v1::LOG_SEVERITY_INFO,
                    absl::StrCat("first step of this attempt: ", e.stage, " step ", e.step, " of ",
                                 e.total),
                    {{"first_step", absl::StrCat(e.step)},
                     {"attempt", absl::StrCat(keeper_.task().attempt())}});
      }
      v1::StageProgress p;
      p.set_step(e.step);
      p.set_total_steps(e.total);
      if (std::isfinite(e.loss)) p.set_loss(e.loss);
      loss_ = e.loss;
      if (e.validation) {
        // Stage 1 validates the attention MSE; stage 2 reports perplexity,
        // whose log is the validation loss in nats.
        validation_ = *e.validation;
        const double v = e.stage == kFinetuneStage ? std::log(*e.validation) : *e.validation;
        if (std::isfinite(v)) last_validation_loss_ = v;
        keeper_.Log(v1::LOG_SEVERITY_INFO,
                    absl::StrCat(e.stage, " step ", e.step, ": validation ",
                                 e.stage == kFinetuneStage ? "perplexity " : "MSE ", *e.validation),
                    {{"step", absl::StrCat(e.step)}});
      }
      if (last_validation_loss_) p.set_validation_loss(*last_validation_loss_);
      p.set_tokens_processed(e.step * tokens_per_step_);
      p.set_token_budget(e.total * tokens_per_step_);
      p.set_tokens_per_second(e.tokens_per_second);
      if (e.eta_seconds > 0) SetSeconds(e.eta_seconds, p.mutable_eta());
      progress_ = p;
      keeper_.SetProgress(p);
      if (context_.metrics != nullptr) context_.metrics->SetTokensPerSecond(e.tokens_per_second);
      if (!std::isfinite(e.loss)) {
        stop_ = Stop::kDiverged;
        return false;
      }
    }
    NoteCheckpoint();
    if (stop_after_transfer_ && ((e.stage == kTransferStage && e.total > 0 && e.step >= e.total) ||
                                 e.stage == kFinetuneStage)) {
      stop_ = Stop::kTransferDone;  // the checkpoint written now is stage 1's result
      return false;
    }
    if (keeper_.should_stop()) {
      stop_ = Stop::kLease;
      return false;
    }
    if (context_.shutting_down && context_.shutting_down()) {
      stop_ = Stop::kShutdown;
      return false;
    }
    return true;
  }

  // Reports the attempt's checkpoint once one exists.
  void NoteCheckpoint() {
    if (Exists(options_.out_dir + "/checkpoint/state.json")) {
      keeper_.SetCheckpoint(rel_out_ + "/checkpoint");
    }
  }

  LeaseKeeper& keeper_;
  const RunContext& context_;
  const convert::ConvertOptions options_;
  const bool stop_after_transfer_;
  const std::string rel_out_;
  const int64_t tokens_per_step_;
  std::string stage_;
  Stop stop_ = Stop::kNone;
  v1::StageProgress progress_;
  std::optional<double> validation_;
  std::optional<double> last_validation_loss_;
  double loss_ = 0;
  int64_t steps_run_ = 0;
};

// The end of a run that Convert reported CANCELLED (the driver stopped it)
// other than for a finished stage 1.
Outcome StoppedRun(LeaseKeeper& keeper, const ConvertDriver& driver, const absl::Status& status) {
  switch (driver.stop()) {
    case ConvertDriver::Stop::kLease:
      keeper.StopHeartbeats();
      server::LogWarning("task.abandoned", {{"task_id", keeper.task().task_id()},
                                            {"verdict", v1::HeartbeatAction_Name(keeper.verdict())}});
      return Outcome::kAbandoned;
    case ConvertDriver::Stop::kShutdown: {
      // Tell the scheduler where the checkpoint is, then leave the lease to
      // DeregisterWorker (re-queued without counting an attempt).
      keeper.Log(v1::LOG_SEVERITY_WARNING,
                 absl::StrCat("worker shutting down: stopped with checkpoint ", keeper.checkpoint()));
      keeper.Flush();
      keeper.StopHeartbeats();
      server::LogInfo("task.handed_back", {{"task_id", keeper.task().task_id()},
                                           {"checkpoint", keeper.checkpoint()}});
      return Outcome::kHandedBack;
    }
    case ConvertDriver::Stop::kDiverged: {
      const std::string message =
          absl::StrCat("training diverged: loss ", driver.last_loss(), " at step ",
                       driver.last_progress().step());
      keeper.Log(v1::LOG_SEVERITY_ERROR, message);
      absl::StatusOr<v1::FailTaskResponse> r =
          keeper.Fail(v1::FAILURE_CODE_DIVERGED, message, /*retryable=*/false);
      if (!r.ok()) server::LogWarning("task.fail_refused", {{"status", r.status()}});
      return Outcome::kFailed;
    }
    default:
      return ReportFailure(keeper, status, "conversion");
  }
}

void AddResultMetrics(const convert::ConvertResult& r, v1::TaskOutputs* out) {
  auto& m = *out->mutable_metrics();
  m["final_loss"] = r.last_loss;
  m["initial_validation_mse"] = r.initial_val_mse;
  m["final_validation_mse"] = r.final_val_mse;
  m["teacher_validation_perplexity"] = r.teacher_val_ppl;
  m["student_validation_perplexity_before_finetune"] = r.student_val_ppl_before_finetune;
  m["student_validation_perplexity"] = r.student_val_ppl;
  m["stage1_steps"] = static_cast<double>(r.stage1_steps);
  m["stage2_steps"] = static_cast<double>(r.stage2_steps);
  m["seconds"] = r.seconds;
}

Outcome RunAttentionTransfer(LeaseKeeper& keeper, const RunContext& ctx) {
  const v1::Task& task = keeper.task();
  const std::string out_abs = ctx.artifact_root + "/" + task.output_path();
  absl::StatusOr<convert::ConvertOptions> options = ConvertOptionsForTask(task, ctx.artifact_root);
  if (!options.ok()) return ReportFailure(keeper, options.status(), "spec");
  if (options->attention.recipe == model::Recipe::kLinear) {
    // Nothing to transfer: FINETUNE starts the pipeline itself.
    if (absl::Status s = convert::MakeDirs(out_abs); !s.ok()) {
      return ReportFailure(keeper, s, "output_path");
    }
    keeper.Log(v1::LOG_SEVERITY_INFO, "linear baseline: no attention transfer to run");
    v1::TaskOutputs out;
    out.set_output_path(task.output_path());
    return ReportComplete(keeper, std::move(out));
  }
  options->out_dir = out_abs;
  if (!task.resume_checkpoint_path().empty()) {
    std::optional<std::string> from =
        CompleteCheckpoint(ctx.artifact_root + "/" + task.resume_checkpoint_path());
    if (!from) {
      keeper.Log(v1::LOG_SEVERITY_WARNING,
                 absl::StrCat("resume checkpoint ", task.resume_checkpoint_path(),
                              " is missing or incomplete; starting over"));
    } else {
      absl::StatusOr<CheckpointState> state = TakeCheckpoint(*from, out_abs);
      if (!state.ok()) return ReportFailure(keeper, state.status(), "resume checkpoint");
      keeper.SetCheckpoint(task.output_path() + "/checkpoint");
      keeper.Log(v1::LOG_SEVERITY_INFO,
                 absl::StrCat("resumed from ", task.resume_checkpoint_path(), " at stage ",
                              state->stage, " step ", state->step),
                 {{"resumed_step", absl::StrCat(state->step)},
                  {"resumed_stage", absl::StrCat(state->stage)}});
      server::LogInfo("task.resumed", {{"task_id", task.task_id()},
                                       {"from", task.resume_checkpoint_path()},
                                       {"stage", state->stage},
                                       {"step", state->step}});
      options->resume = true;
      if (state->stage >= 2 || state->step >= PlannedSteps(*options, 1)) {
        // Stage 1 was already finished when the last attempt ended.
        v1::TaskOutputs out;
        out.set_output_path(task.output_path() + "/checkpoint");
        return ReportComplete(keeper, std::move(out));
      }
    }
  }
  ConvertDriver driver(keeper, ctx, *options, /*stop_after_transfer=*/true);
  absl::StatusOr<convert::ConvertResult> r = driver.Run();
  if (!r.ok() && !(absl::IsCancelled(r.status()) &&
                   driver.stop() == ConvertDriver::Stop::kTransferDone)) {
    return StoppedRun(keeper, driver, r.status());
  }
  if (!Exists(out_abs + "/checkpoint/state.json")) {
    return ReportFailure(keeper, absl::InternalError("the pipeline stopped without a checkpoint"),
                         "attention transfer");
  }
  v1::TaskOutputs out;
  out.set_output_path(task.output_path() + "/checkpoint");
  *out.mutable_final_progress() = driver.last_progress();
  (*out.mutable_metrics())["final_loss"] = driver.last_loss();
  if (driver.last_validation()) (*out.mutable_metrics())["validation_mse"] = *driver.last_validation();
  (*out.mutable_metrics())["steps"] = static_cast<double>(driver.last_progress().step());
  return ReportComplete(keeper, std::move(out));
}

Outcome RunFinetune(LeaseKeeper& keeper, const RunContext& ctx) {
  const v1::Task& task = keeper.task();
  const std::string out_abs = ctx.artifact_root + "/" + task.output_path();
  absl::StatusOr<convert::ConvertOptions> options = ConvertOptionsForTask(task, ctx.artifact_root);
  if (!options.ok()) return ReportFailure(keeper, options.status(), "spec");
  options->out_dir = out_abs;
  // Where to continue from: this task's own last checkpoint, else stage 1's.
  std::optional<std::string> from;
  std::string from_rel;
  if (!task.resume_checkpoint_path().empty()) {
    from = CompleteCheckpoint(ctx.artifact_root + "/" + task.resume_checkpoint_path());
    from_rel = task.resume_checkpoint_path();
    if (!from) {
      keeper.Log(v1::LOG_SEVERITY_WARNING,
                 absl::StrCat("resume checkpoint ", from_rel,
                              " is missing or incomplete; continuing from stage 1's output"));
    }
  }
  if (!from && task.input_paths_size() == 1) {
    from = CompleteCheckpoint(ctx.artifact_root + "/" + task.input_paths(0));
    from_rel = task.input_paths(0);
  }
  if (!from && task.input_paths_size() > 1) {
    // Stage 1 ran per layer block: join the blocks' checkpoints first.
    std::vector<std::string> blocks;
    for (const std::string& in : task.input_paths()) {
      std::optional<std::string> block = CompleteCheckpoint(ctx.artifact_root + "/" + in);
      if (!block) {
        return ReportFailure(keeper,
                             absl::FailedPreconditionError(absl::StrCat(
                                 "input_paths: no stage-1 checkpoint (state.json) in \"", in, "\"")),
                             "finetune");
      }
      blocks.push_back(*block);
    }
    const std::string merged = out_abs + "/stage1-blocks";
    if (absl::Status s = convert::MergeStage1Checkpoints(blocks, merged); !s.ok()) {
      return ReportFailure(keeper, s, "merging the stage-1 blocks");
    }
    from = merged;
    from_rel = absl::StrCat(blocks.size(), " stage-1 blocks");
  }
  const bool transfer = options->attention.recipe != model::Recipe::kLinear;
  if (!from && transfer) {
    return ReportFailure(
        keeper,
        absl::FailedPreconditionError(absl::StrCat(
            "input_paths: no stage-1 checkpoint (state.json) in \"",
            task.input_paths_size() == 1 ? task.input_paths(0) : std::string(), "\"")),
        "finetune");
  }
  if (from) {
    absl::StatusOr<CheckpointState> state = TakeCheckpoint(*from, out_abs);
    if (!state.ok()) return ReportFailure(keeper, state.status(), "checkpoint");
    keeper.SetCheckpoint(task.output_path() + "/checkpoint");
    keeper.Log(v1::LOG_SEVERITY_INFO,
               absl::StrCat("resumed from ", from_rel, " at stage ", state->stage, " step ",
                            state->step),
               {{"resumed_step", absl::StrCat(state->step)},
                {"resumed_stage", absl::StrCat(state->stage)}});
    server::LogInfo("task.resumed", {{"task_id", task.task_id()},
                                     {"from", from_rel},
                                     {"stage", state->stage},
                                     {"step", state->step}});
    options->resume = true;
  }
  ConvertDriver driver(keeper, ctx, *options, /*stop_after_transfer=*/false);
  absl::StatusOr<convert::ConvertResult> r = driver.Run();
  if (!r.ok()) return StoppedRun(keeper, driver, r.status());
  v1::TaskOutputs out;
  out.set_output_path(task.output_path());
  *out.mutable_final_progress() = driver.last_progress();
  AddResultMetrics(*r, &out);
  keeper.Log(v1::LOG_SEVERITY_INFO,
             absl::StrCat("exported ", task.output_path(), ": validation perplexity teacher ",
                          r->teacher_val_ppl, ", student ", r->student_val_ppl));
  return ReportComplete(keeper, std::move(out));
}

Outcome RunPublish(LeaseKeeper& keeper, const RunContext& ctx) {
  const v1::Task& task = keeper.task();
  if (task.input_paths_size() == 0) {
    return ReportFailure(keeper, absl::FailedPreconditionError("input_paths: nothing to publish"),
                         "publish");
  }
  const std::string& model_rel = task.input_paths(task.input_paths_size() - 1);
  const std::string from = ctx.artifact_root + "/" + model_rel;
  const std::string rel_to = task.output_path() + "/model";
  const std::string to = ctx.artifact_root + "/" + rel_to;
  if (absl::Status s = convert::RemoveTree(to); !s.ok()) return ReportFailure(keeper, s, "publish");
  int64_t files = 0;
  absl::Status s = CopyModel(from, to, [&](const std::string& name) {
    ++files;
    v1::StageProgress p;
    p.set_step(files);
    keeper.SetProgress(p);
  });
  if (!s.ok()) return ReportFailure(keeper, s, absl::StrCat("publishing ", model_rel));
  if (keeper.should_stop()) return Outcome::kAbandoned;
  v1::TaskOutputs out;
  out.set_output_path(task.output_path());
  out.set_artifact_path(rel_to);
  out.mutable_final_progress()->set_step(files);
  out.mutable_final_progress()->set_total_steps(files);
  (*out.mutable_metrics())["files"] = static_cast<double>(files);
  keeper.Log(v1::LOG_SEVERITY_INFO, absl::StrCat("published ", model_rel, " as ", rel_to));
  return ReportComplete(keeper, std::move(out));
}

}  // namespace

std::string OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCompleted: return "completed";
    case Outcome::kFailed: return "failed";
    case Outcome::kAbandoned: return "abandoned";
    case Outcome::kHandedBack: return "handed_back";
  }
  return "unknown";
}

Outcome RunTask(LeaseKeeper& keeper, const RunContext& context) {
  const v1::Task& task = keeper.task();
  server::LogInfo("task.started", {{"task_id", task.task_id()},
                                   {"job_id", task.job_id()},
                                   {"kind", StageKindName(task.kind())},
                                   {"attempt", task.attempt()},
                                   {"output_path", task.output_path()},
                                   {"resume_from", task.resume_checkpoint_path()}});
  keeper.Log(v1::LOG_SEVERITY_INFO,
             absl::StrCat(StageKindName(task.kind()), " attempt ", task.attempt(), " started"),
             {{"output_path", task.output_path()}});
  Outcome outcome = Outcome::kFailed;
  try {
    switch (task.kind()) {
      case v1::STAGE_ATTENTION_TRANSFER:
        outcome = RunAttentionTransfer(keeper, context);
        break;
      case v1::STAGE_FINETUNE:
        outcome = RunFinetune(keeper, context);
        break;
      case v1::STAGE_PUBLISH:
        outcome = RunPublish(keeper, context);
        break;
      default:
        // Registered kinds exclude it; another worker kind may take it.
        outcome = ReportFailure(
            keeper,
            absl::UnavailableError(absl::StrCat("linearize-worker does not run ",
                                                StageKindName(task.kind()), " tasks")),
            "task");
    }
  } catch (const std::exception& e) {
    outcome = ReportFailure(keeper, absl::InternalError(e.what()), "worker");
  }
  if (context.metrics != nullptr) {
    context.metrics->TaskEnded(StageKindName(task.kind()), OutcomeName(outcome));
  }
  return outcome;
}

}  // namespace linearize::worker
