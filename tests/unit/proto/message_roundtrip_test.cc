// Representative messages of every file survive serialize -> parse intact:
// oneofs, maps, repeated fields, optional presence, bytes, well-known types.

#include <string>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "linearize/v1/evaluation_service.pb.h"
#include "linearize/v1/inference_service.pb.h"
#include "linearize/v1/job_service.pb.h"
#include "linearize/v1/worker_service.pb.h"

namespace {

namespace v1 = linearize::v1;
using google::protobuf::Message;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;

// Serializes `in`, parses it into a fresh message of the same type and
// checks the two are equal; returns the parsed copy.
template <typename M>
M RoundTrip(const M& in) {
  std::string wire;
  EXPECT_TRUE(in.SerializeToString(&wire));
  M out;
  EXPECT_TRUE(out.ParseFromString(wire));
  EXPECT_TRUE(MessageDifferencer::Equals(in, out))
      << "before:\n" << in.DebugString() << "after:\n" << out.DebugString();
  // The proto3 JSON form (used for the report's .json) round-trips too.
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(in, &json).ok());
  M from_json;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &from_json).ok()) << json;
  EXPECT_TRUE(MessageDifferencer::Equals(in, from_json)) << json;
  return out;
}

v1::ConversionSpec FullSpec() {
  v1::ConversionSpec spec;
  spec.mutable_teacher()->set_artifact_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  v1::Recipe* recipe = spec.mutable_recipe();
  recipe->set_kind(v1::RECIPE_KIND_LOLCATS);
  recipe->mutable_lolcats()->set_feature_dim(64);
  recipe->mutable_lolcats()->set_window_size(64);
  recipe->mutable_lolcats()->set_window_kind(v1::LolcatsParams::WINDOW_KIND_BLOCKED);
  recipe->mutable_lolcats()->set_window_factor_init(0.1f);
  v1::AttentionTransferParams* stage1 = recipe->mutable_attention_transfer();
  stage1->mutable_training()->set_token_budget(20'000'000);
  stage1->mutable_training()->set_sequence_length(1024);
  stage1->mutable_training()->set_learning_rate(1e-2);
  stage1->mutable_training()->set_lr_schedule(v1::LR_SCHEDULE_REDUCE_ON_PLATEAU);
  stage1->mutable_training()->set_early_stopping_patience(0);  // explicit "off"
  stage1->set_mse_weight(1000.0);
  stage1->set_layers_per_block(6);
  v1::FinetuneParams* stage2 = recipe->mutable_finetune();
  stage2->mutable_lora()->set_rank(8);
  stage2->mutable_lora()->set_alpha(16.0f);
  stage2->mutable_lora()->set_dropout(0.0f);  // explicit zero, not "unset"
  for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    stage2->mutable_lora()->add_target_modules(m);
  }
  v1::TextSource* train = spec.mutable_data()->add_train();
  train->set_path("datasets/alpaca.jsonl");
  train->set_format(v1::DATA_FORMAT_JSONL);
  train->mutable_fields()->set_prompt("instruction");
  train->mutable_fields()->set_response("output");
  spec.mutable_data()->mutable_self_distillation()->set_enabled(true);
  spec.mutable_data()->mutable_self_distillation()->set_temperature(0.7f);
  *spec.mutable_budget()->mutable_max_wall_time() = TimeUtil::SecondsToDuration(6 * 3600);
  spec.mutable_budget()->set_gpus_per_task(1);
  v1::EvaluationTask* eval = spec.add_evaluation_tasks();
  eval->set_name("mmlu");
  eval->mutable_multiple_choice()->add_paths("eval/mmlu.jsonl");
  eval->mutable_multiple_choice()->set_num_shots(5);
  spec.set_output_model_name("smollm2-135m-lolcats");
  spec.set_precision(v1::PRECISION_BF16);
  return spec;
}

TEST(ProtoRoundTrip, SubmitConversionRequestKeepsEveryField) {
  v1::SubmitConversionRequest req;
  *req.mutable_spec() = FullSpec();
  req.set_display_name("smollm2 lolcats");
  req.set_priority(-5);
  (*req.mutable_labels())["team"] = "research";
  req.set_request_id("0b6f8c1e-5d2a-4c47-9f0e-7a1d2b3c4d5e");
  v1::SubmitConversionRequest out = RoundTrip(req);
  EXPECT_EQ(out.spec().recipe().params_case(), v1::Recipe::kLolcats);
  EXPECT_EQ(out.spec().recipe().lolcats().window_size(), 64);
  // Explicit zeros survive as "set": they mean "off", not "default".
  ASSERT_TRUE(out.spec().recipe().finetune().lora().has_dropout());
  EXPECT_EQ(out.spec().recipe().finetune().lora().dropout(), 0.0f);
  ASSERT_TRUE(out.spec().recipe().attention_transfer().training().has_early_stopping_patience());
  EXPECT_FALSE(out.spec().recipe().finetune().training().has_learning_rate());
  EXPECT_EQ(out.spec().evaluation_tasks(0).task_case(), v1::EvaluationTask::kMultipleChoice);
  EXPECT_EQ(out.labels().at("team"), "research");
  EXPECT_EQ(out.spec().budget().max_wall_time().seconds(), 6 * 3600);
}

TEST(ProtoRoundTrip, JobAndItsEvents) {
  v1::Job job;
  job.set_job_id("job-01HZX");
  job.set_tenant("acme");
  *job.mutable_spec() = FullSpec();
  job.set_state(v1::JOB_STATE_FAILED);
  job.set_stage(v1::STAGE_FINETUNE);
  v1::StageSummary* s1 = job.add_stages();
  s1->set_stage(v1::STAGE_ATTENTION_TRANSFER);
  s1->set_state(v1::STAGE_STATE_SUCCEEDED);
  s1->set_final_loss(0.0125);
  s1->mutable_usage()->set_gpu_seconds(3600.5);
  job.mutable_failure()->set_code(v1::FAILURE_CODE_DIVERGED);
  job.mutable_failure()->set_message("stage 2 step 812: loss is NaN");
  *job.mutable_create_time() = TimeUtil::SecondsToTimestamp(1'700'000'000);
  *job.mutable_end_time() = TimeUtil::SecondsToTimestamp(1'700'020'000);
  v1::Job out = RoundTrip(job);
  EXPECT_EQ(out.failure().code(), v1::FAILURE_CODE_DIVERGED);
  EXPECT_DOUBLE_EQ(out.stages(0).final_loss(), 0.0125);

  v1::JobEvent progress;
  progress.set_sequence(7);
  v1::StageProgress* p = progress.mutable_progress();
  p->set_stage(v1::STAGE_ATTENTION_TRANSFER);
  p->mutable_layer_block()->set_first_layer(6);
  p->mutable_layer_block()->set_num_layers(6);
  p->set_step(120);
  p->set_total_steps(2441);
  p->set_loss(0.031);
  p->set_tokens_per_second(51234.5);
  *p->mutable_eta() = TimeUtil::SecondsToDuration(1800);
  EXPECT_EQ(RoundTrip(progress).progress().layer_block().first_layer(), 6);

  v1::JobEvent log;
  log.mutable_log()->set_severity(v1::LOG_SEVERITY_WARNING);
  log.mutable_log()->set_message("gradient norm clipped");
  (*log.mutable_log()->mutable_fields())["step"] = "120";
  EXPECT_EQ(RoundTrip(log).event_case(), v1::JobEvent::kLog);

  v1::JobEvent change;
  change.mutable_state_change()->set_previous_state(v1::JOB_STATE_RUNNING);
  change.mutable_state_change()->set_state(v1::JOB_STATE_FAILED);
  *change.mutable_state_change()->mutable_job() = job;
  EXPECT_EQ(RoundTrip(change).state_change().job().job_id(), "job-01HZX");
}

TEST(ProtoRoundTrip, WorkerTaskAndHeartbeat) {
  v1::LeaseTaskResponse resp;
  v1::Task* task = resp.mutable_task();
  task->set_task_id("task-1");
  task->set_job_id("job-01HZX");
  task->set_kind(v1::STAGE_ATTENTION_TRANSFER);
  task->set_attempt(2);
  task->mutable_layer_block()->set_first_layer(0);
  task->mutable_layer_block()->set_num_layers(15);
  *task->mutable_spec() = FullSpec();
  task->set_output_path("jobs/job-01HZX/tasks/task-1/attempt-2");
  task->set_resume_checkpoint_path("jobs/job-01HZX/tasks/task-1/attempt-1/checkpoints/step-500");
  task->set_lease_id("lease-9");
  task->set_fencing_token(int64_t{1} << 40);
  *task->mutable_lease_deadline() = TimeUtil::SecondsToTimestamp(1'700'000'060);
  EXPECT_EQ(RoundTrip(resp).task().fencing_token(), int64_t{1} << 40);
  EXPECT_FALSE(RoundTrip(v1::LeaseTaskResponse()).has_task()) << "empty = no task";

  v1::HeartbeatRequest hb;
  hb.set_lease_id("lease-9");
  hb.set_fencing_token(int64_t{1} << 40);
  hb.mutable_progress()->set_step(10);
  hb.add_logs()->set_message("step 10");
  hb.set_checkpoint_path("jobs/job-01HZX/tasks/task-1/attempt-2/checkpoints/step-10");
  RoundTrip(hb);

  v1::FailTaskRequest fail;
  fail.set_lease_id("lease-9");
  fail.set_code(v1::FAILURE_CODE_OUT_OF_MEMORY);
  fail.set_retryable(true);
  EXPECT_TRUE(RoundTrip(fail).retryable());

  v1::RegisterWorkerRequest reg;
  v1::GpuDevice* gpu = reg.mutable_resources()->add_gpus();
  gpu->set_name("NVIDIA H100 80GB HBM3");
  gpu->set_memory_bytes(int64_t{80} << 30);
  gpu->set_compute_capability("9.0");
  reg.mutable_resources()->set_cpu_cores(16);
  reg.add_kinds(v1::STAGE_ATTENTION_TRANSFER);
  reg.add_kinds(v1::STAGE_FINETUNE);
  reg.set_request_id("worker-host-a-boot-1");
  EXPECT_EQ(RoundTrip(reg).resources().gpus(0).memory_bytes(), int64_t{80} << 30);
}

TEST(ProtoRoundTrip, EvaluationEventsAndReport) {
  v1::EvaluationReport report;
  report.set_report_id("rep-1");
  report.mutable_model()->set_job_id("job-01HZX");
  report.mutable_teacher()->set_model_name("smollm2-135m-instruct");
  report.set_state(v1::EVALUATION_STATE_SUCCEEDED);
  v1::EvaluationTaskResult* ppl = report.add_tasks();
  ppl->set_name("perplexity");
  ppl->set_state(v1::EVALUATION_STATE_SUCCEEDED);
  (*ppl->mutable_metrics())["perplexity"] = 14.25;
  (*ppl->mutable_metrics())["teacher_perplexity"] = 12.5;
  ppl->mutable_perplexity()->mutable_model()->set_perplexity(14.25);
  ppl->mutable_perplexity()->mutable_teacher()->set_perplexity(12.5);
  ppl->mutable_perplexity()->set_kl_to_teacher(0.08);
  v1::EvaluationTaskResult* recall = report.add_tasks();
  recall->set_name("recall");
  v1::RecallPoint* point = recall->mutable_recall()->add_points();
  point->set_context_length(4096);
  point->set_accuracy(0.5);
  report.set_markdown_path("evaluations/rep-1/report.md");
  report.set_json_path("evaluations/rep-1/report.json");

  v1::EvaluationEvent event;
  *event.mutable_report() = report;
  v1::EvaluationEvent out = RoundTrip(event);
  ASSERT_EQ(out.report().tasks_size(), 2);
  EXPECT_EQ(out.report().tasks(0).result_case(), v1::EvaluationTaskResult::kPerplexity);
  EXPECT_DOUBLE_EQ(out.report().tasks(0).metrics().at("teacher_perplexity"), 12.5);
  EXPECT_FALSE(out.report().tasks(1).recall().points(0).has_teacher_accuracy());

  v1::EvaluateRequest req;
  req.mutable_model()->set_artifact_path("jobs/job-01HZX/model");
  v1::EvaluationTask* t = req.add_tasks();
  t->mutable_recall()->set_kind(v1::RecallTask::KIND_PASSKEY);
  t->mutable_recall()->add_context_lengths(512);
  t->mutable_recall()->add_context_lengths(2048);
  req.set_request_id("eval-1");
  EXPECT_EQ(RoundTrip(req).tasks(0).recall().context_lengths(1), 2048);
}

TEST(ProtoRoundTrip, GenerationStreamAndSamplingPresence) {
  v1::GenerateRequest req;
  req.set_session_id("sess-1");
  v1::ChatMessage* m = req.mutable_messages()->add_messages();
  m->set_role(v1::CHAT_ROLE_USER);
  m->set_content("Héllo, wörld ✓");
  req.mutable_sampling()->set_temperature(0.0f);  // greedy: must stay "set"
  req.mutable_sampling()->set_seed(42);
  req.mutable_sampling()->add_stop("\n\n");
  req.mutable_sampling()->add_stop_token_ids(2);
  req.mutable_sampling()->set_logprobs(3);
  v1::GenerateRequest out = RoundTrip(req);
  EXPECT_EQ(out.input_case(), v1::GenerateRequest::kMessages);
  EXPECT_EQ(out.messages().messages(0).content(), "Héllo, wörld ✓");
  ASSERT_TRUE(out.sampling().has_temperature());
  EXPECT_EQ(out.sampling().temperature(), 0.0f);
  EXPECT_FALSE(out.sampling().has_top_p());

  v1::GenerateResponse delta;
  delta.mutable_delta()->set_text(" world");
  delta.mutable_delta()->add_token_ids(1917);
  v1::TokenLogprob* lp = delta.mutable_delta()->add_logprobs();
  lp->set_token_id(1917);
  lp->set_logprob(-0.25f);
  lp->add_top_logprobs()->set_token_id(1917);
  EXPECT_EQ(RoundTrip(delta).delta().logprobs(0).top_logprobs_size(), 1);

  v1::GenerateResponse end;
  end.mutable_end()->set_finish_reason(v1::FINISH_REASON_LENGTH);
  end.mutable_end()->mutable_usage()->set_prompt_tokens(12);
  end.mutable_end()->mutable_usage()->set_completion_tokens(256);
  end.mutable_end()->mutable_usage()->set_cached_tokens(4096);
  *end.mutable_end()->mutable_timings()->mutable_time_to_first_token() =
      TimeUtil::MillisecondsToDuration(35);
  EXPECT_EQ(RoundTrip(end).end().usage().cached_tokens(), 4096);
}

TEST(ProtoRoundTrip, ChatMessagesAndSessionSnapshot) {
  v1::ChatRequest start;
  start.mutable_start()->mutable_create_session()->set_model_name("smollm2-135m-instruct");
  start.mutable_start()->mutable_create_session()->set_system_prompt("Be brief.");
  start.mutable_start()->mutable_create_session()->set_request_id("chat-1");
  start.mutable_start()->set_delete_on_close(true);
  EXPECT_EQ(RoundTrip(start).start().session_case(), v1::ChatStart::kCreateSession);

  v1::ChatRequest cancel;
  cancel.mutable_cancel();
  EXPECT_EQ(RoundTrip(cancel).request_case(), v1::ChatRequest::kCancel)
      << "an empty oneof member must still be seen as set";

  v1::ChatResponse turn_end;
  turn_end.set_turn(3);
  turn_end.mutable_end()->set_finish_reason(v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(RoundTrip(turn_end).turn(), 3);

  v1::SessionSnapshot snap;
  snap.set_format_version(1);
  std::string blob(1 << 16, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 131 % 251);
  snap.set_data(blob);
  snap.set_checksum("sha256:" + std::string(64, 'a'));
  snap.set_size_bytes(static_cast<int64_t>(blob.size()));
  snap.set_model_fingerprint("sha256:" + std::string(64, 'b'));
  snap.set_tokens_seen(123456);
  v1::SessionSnapshot out = RoundTrip(snap);
  EXPECT_EQ(out.data(), blob) << "binary state must survive byte for byte";

  v1::Session session;
  session.set_session_id("sess-1");
  session.set_state(v1::SESSION_STATE_SPILLED);
  session.set_tokens_seen(123456);
  session.set_state_bytes(8'847'360);
  *session.mutable_idle_timeout() = TimeUtil::SecondsToDuration(1800);
  EXPECT_EQ(RoundTrip(session).state(), v1::SESSION_STATE_SPILLED);
}

TEST(ProtoRoundTrip, ParsingGarbageFailsCleanly) {
  // A truncated varint and a field with an invalid wire type.
  v1::Job job;
  EXPECT_FALSE(job.ParseFromString(std::string("\x08\xff\xff", 3)));
  EXPECT_FALSE(job.ParseFromString(std::string("\x0f\x01", 2)));
}

}  // namespace
