// JobService over a loopback gRPC server: submission with defaults,
// idempotency, the exact status code and field name of bad requests,
// tenancy, and WatchJob streams.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "tests/unit/scheduler/service_fixture.h"

namespace linearize::scheduler::testing {
namespace {

using ::testing::HasSubstr;

class JobServiceTest : public SchedulerServiceTest {
 protected:
  void SetUp() override {
    SchedulerServiceTest::SetUp();
    StartScheduler();
  }
};

TEST_F(JobServiceTest, SubmitQueuesAJobWithEveryDefaultFilledIn) {
  v1::Job job;
  grpc::Status s = Submit(ValidRequest(), &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.tenant(), "acme");
  EXPECT_EQ(job.display_name(), "tiny lolcats");
  const v1::ConversionSpec& spec = job.spec();
  EXPECT_EQ(spec.recipe().lolcats().feature_dim(), 64);
  EXPECT_EQ(spec.recipe().lolcats().window_size(), 64);
  EXPECT_EQ(spec.recipe().lolcats().window_kind(), v1::LolcatsParams::WINDOW_KIND_BLOCKED);
  EXPECT_FLOAT_EQ(spec.recipe().lolcats().window_factor_init(), 0.1f);
  const v1::TrainingParams& stage1 = spec.recipe().attention_transfer().training();
  EXPECT_EQ(stage1.sequence_length(), 256) << "capped at the teacher's context";
  EXPECT_EQ(stage1.token_budget(), 20'000'000);
  EXPECT_DOUBLE_EQ(stage1.learning_rate(), 1e-2);
  EXPECT_EQ(stage1.lr_schedule(), v1::LR_SCHEDULE_REDUCE_ON_PLATEAU);
  EXPECT_EQ(stage1.early_stopping_patience(), 10);
  EXPECT_TRUE(stage1.has_seed());
  EXPECT_DOUBLE_EQ(spec.recipe().attention_transfer().mse_weight(), 1000);
  const v1::FinetuneParams& stage2 = spec.recipe().finetune();
  EXPECT_EQ(stage2.training().sequence_length(), 1024);
  EXPECT_DOUBLE_EQ(stage2.training().learning_rate(), 1e-4);
  EXPECT_EQ(stage2.lora().rank(), 8);
  EXPECT_FLOAT_EQ(stage2.lora().alpha(), 16);
  EXPECT_THAT(stage2.lora().target_modules(),
              ::testing::ElementsAre("q_proj", "k_proj", "v_proj", "o_proj"));
  EXPECT_DOUBLE_EQ(spec.data().validation_fraction(), 0.01);
  EXPECT_EQ(spec.budget().max_wall_time().seconds(), 86400);
  EXPECT_EQ(spec.budget().gpus_per_task(), 0);
  EXPECT_EQ(spec.precision(), v1::PRECISION_FP32);
  EXPECT_EQ(spec.output_model_name(), "job-" + job.job_id());
  ASSERT_EQ(spec.evaluation_tasks_size(), 2);
  EXPECT_EQ(spec.evaluation_tasks(0).name(), "perplexity");
  EXPECT_EQ(spec.evaluation_tasks(1).name(), "recall");
  ASSERT_EQ(job.stages_size(), 4);
  for (const v1::StageSummary& stage : job.stages()) {
    EXPECT_EQ(stage.state(), v1::STAGE_STATE_PENDING);
    EXPECT_EQ(stage.tasks_total(), 1);
  }

  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(As("acme").get(), get, &got).ok());
  EXPECT_EQ(got.spec().SerializeAsString(), spec.SerializeAsString());
}

TEST_F(JobServiceTest, BaselineSkipsStageOneAndBlocksSplitIt) {
  v1::SubmitConversionRequest r = ValidRequest();
  r.mutable_spec()->mutable_recipe()->set_kind(v1::RECIPE_KIND_LINEAR_BASELINE);
  r.mutable_spec()->set_skip_evaluation(true);
  v1::Job job;
  ASSERT_TRUE(Submit(r, &job).ok());
  EXPECT_EQ(job.stages(0).state(), v1::STAGE_STATE_SKIPPED);
  EXPECT_EQ(job.stages(2).state(), v1::STAGE_STATE_SKIPPED);
  EXPECT_EQ(job.spec().recipe().linear_baseline().feature_map(),
            v1::LinearBaselineParams::FEATURE_MAP_ELU_PLUS_ONE);

  r = ValidRequest();
  r.mutable_spec()->mutable_recipe()->mutable_attention_transfer()->set_layers_per_block(1);
  ASSERT_TRUE(Submit(r, &job).ok());
  EXPECT_EQ(job.stages(0).tasks_total(), 2) << "2 layers, 1 per block";
}

TEST_F(JobServiceTest, RepeatedRequestIdReturnsTheSameJob) {
  v1::SubmitConversionRequest r = ValidRequest();
  r.set_request_id("3f2a-1c");
  v1::Job first, second, third;
  ASSERT_TRUE(Submit(r, &first).ok());
  ASSERT_TRUE(Submit(r, &second).ok());
  EXPECT_EQ(first.job_id(), second.job_id());
  r.set_priority(5);
  grpc::Status s = Submit(r, &third);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("request_id"));
}

struct BadCase {
  const char* name;
  std::function<void(v1::SubmitConversionRequest&)> mutate;
  grpc::StatusCode code;
  const char* field;  // must appear in the message
};

TEST_F(JobServiceTest, BadRequestsGetTheExactCodeAndNameTheField) {
  fs::create_directories(root_ + "/models/gpt2");
  std::ofstream(root_ + "/models/gpt2/config.json")
      << R"({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})";
  fs::create_directory_symlink("/etc", root_ + "/escape");
  const std::vector<BadCase> cases = {
      {"unknown recipe",
       [](auto& r) {
         r.mutable_spec()->mutable_recipe()->set_kind(static_cast<v1::RecipeKind>(42));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.kind"},
      {"no recipe kind", [](auto& r) { r.mutable_spec()->mutable_recipe()->clear_kind(); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.kind"},
      {"no spec", [](auto& r) { r.clear_spec(); }, grpc::StatusCode::INVALID_ARGUMENT, "spec"},
      {"missing teacher", [](auto& r) { r.mutable_spec()->clear_teacher(); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.teacher"},
      {"teacher not found",
       [](auto& r) { r.mutable_spec()->mutable_teacher()->set_artifact_path("models/none"); },
       grpc::StatusCode::NOT_FOUND, "spec.teacher.artifact_path"},
      {"unknown model name",
       [](auto& r) { r.mutable_spec()->mutable_teacher()->set_model_name("no-such-model"); },
       grpc::StatusCode::NOT_FOUND, "spec.teacher.model_name"},
      {"unsupported architecture",
       [](auto& r) { r.mutable_spec()->mutable_teacher()->set_artifact_path("models/gpt2"); },
       grpc::StatusCode::FAILED_PRECONDITION, "spec.teacher.artifact_path"},
      {"negative token budget",
       [](auto& r) { r.mutable_spec()->mutable_budget()->set_max_tokens(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.budget.max_tokens"},
      {"negative wall time",
       [](auto& r) {
         r.mutable_spec()->mutable_budget()->mutable_max_wall_time()->set_seconds(-5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.budget.max_wall_time"},
      {"negative stage budget",
       [](auto& r) {
         r.mutable_spec()
             ->mutable_recipe()
             ->mutable_finetune()
             ->mutable_training()
             ->set_token_budget(-3);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.finetune.training.token_budget"},
      {"gpus with cpu_only",
       [](auto& r) { r.mutable_spec()->mutable_budget()->set_gpus_per_task(2); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.budget.gpus_per_task"},
      {"oversized display name", [](auto& r) { r.set_display_name(std::string(300, 'x')); },
       grpc::StatusCode::INVALID_ARGUMENT, "display_name"},
      {"oversized request id", [](auto& r) { r.set_request_id(std::string(200, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id"},
      {"oversized path",
       [](auto& r) {
         r.mutable_spec()->mutable_data()->mutable_train(0)->set_path(std::string(5000, 'a'));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.train[0].path"},
      {"oversized model name",
       [](auto& r) { r.mutable_spec()->set_output_model_name(std::string(200, 'm')); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.output_model_name"},
      {"bad label key", [](auto& r) { (*r.mutable_labels())["Not OK"] = "v"; },
       grpc::StatusCode::INVALID_ARGUMENT, "labels"},
      {"priority out of range", [](auto& r) { r.set_priority(101); },
       grpc::StatusCode::INVALID_ARGUMENT, "priority"},
      {"params of another recipe",
       [](auto& r) { r.mutable_spec()->mutable_recipe()->mutable_lizard(); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.lizard"},
      {"window out of range",
       [](auto& r) {
         r.mutable_spec()->mutable_recipe()->mutable_lolcats()->set_window_size(9000);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.lolcats.window_size"},
      {"unknown LoRA module",
       [](auto& r) {
         r.mutable_spec()->mutable_recipe()->mutable_finetune()->mutable_lora()->add_target_modules(
             "qkv");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.finetune.lora.target_modules[0]"},
      {"no training data", [](auto& r) { r.mutable_spec()->mutable_data()->clear_train(); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.train"},
      {"absolute path",
       [](auto& r) { r.mutable_spec()->mutable_data()->mutable_train(0)->set_path("/etc/passwd"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.train[0].path"},
      {"dot-dot escape",
       [](auto& r) {
         r.mutable_spec()->mutable_data()->mutable_train(0)->set_path("data/../../x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.train[0].path"},
      {"symlink escape",
       [](auto& r) {
         r.mutable_spec()->mutable_data()->mutable_train(0)->set_path("escape/passwd");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.train[0].path"},
      {"missing data",
       [](auto& r) {
         r.mutable_spec()->mutable_data()->mutable_train(0)->set_path("data/none.txt");
       },
       grpc::StatusCode::NOT_FOUND, "spec.data.train[0].path"},
      {"too many layers per block",
       [](auto& r) {
         r.mutable_spec()->mutable_recipe()->mutable_attention_transfer()->set_layers_per_block(3);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.recipe.attention_transfer.layers_per_block"},
      {"sequence beyond the teacher's context",
       [](auto& r) {
         r.mutable_spec()
             ->mutable_recipe()
             ->mutable_attention_transfer()
             ->mutable_training()
             ->set_sequence_length(512);
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "spec.recipe.attention_transfer.training.sequence_length"},
      {"evaluation task without a kind",
       [](auto& r) { r.mutable_spec()->add_evaluation_tasks()->set_name("x"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.evaluation_tasks[0]"},
      {"built-in model name as output",
       [](auto& r) { r.mutable_spec()->set_output_model_name("smollm2-135m-instruct"); },
       grpc::StatusCode::ALREADY_EXISTS, "spec.output_model_name"},
  };
  for (const BadCase& c : cases) {
    v1::SubmitConversionRequest r = ValidRequest();
    c.mutate(r);
    v1::Job job;
    grpc::Status s = Submit(r, &job);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.field)) << c.name;
  }
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs_->ListJobs(As("acme").get(), list, &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 0) << "a bad request created a job";
}

TEST_F(JobServiceTest, TeacherFromAnotherJob) {
  v1::Job first;
  ASSERT_TRUE(Submit(ValidRequest(), &first).ok());
  v1::SubmitConversionRequest r = ValidRequest();
  r.mutable_spec()->mutable_teacher()->set_job_id(first.job_id());
  v1::Job job;
  grpc::Status s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("spec.teacher.job_id"));
  s = Submit(r, &job, "globex");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << "another tenant's job leaked";
  EXPECT_THAT(s.error_message(), HasSubstr("spec.teacher.job_id"));
}

TEST_F(JobServiceTest, TenancyAndIdChecks) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  // Auth off: a call without the tenant header is tenant "default", which
  // does not see acme's job; a malformed header is refused.
  v1::GetJobRequest as_default;
  as_default.set_job_id(job.job_id());
  v1::Job ignored;
  grpc::Status s = jobs_->GetJob(As("").get(), as_default, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  v1::Job default_job;
  ASSERT_TRUE(Submit(ValidRequest(), &default_job, "").ok());
  EXPECT_EQ(default_job.tenant(), "default");
  s = Submit(ValidRequest(), &default_job, "no/slashes");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("x-linearize-tenant"));

  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  v1::Job got;
  s = jobs_->GetJob(As("globex").get(), get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("job_id"));
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  EXPECT_EQ(jobs_->CancelJob(As("globex").get(), cancel, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetJobLogsRequest logs;
  logs.set_job_id(job.job_id());
  v1::GetJobLogsResponse lines;
  EXPECT_EQ(jobs_->GetJobLogs(As("globex").get(), logs, &lines).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  auto ctx = As("globex");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  v1::JobEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  get.set_job_id("");
  s = jobs_->GetJob(As("acme").get(), get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("job_id"));
  cancel.set_reason(std::string(2000, 'r'));
  s = jobs_->CancelJob(As("acme").get(), cancel, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("reason"));
}

// A simulated worker: leases every task of the job in turn and completes it.
void RunJobToTheEnd(v1::WorkerService::Stub& workers, const std::string& job_id, bool with_logs) {
  v1::RegisterWorkerRequest reg;
  reg.mutable_resources()->set_cpu_cores(1);
  reg.mutable_resources()->set_memory_bytes(1 << 30);
  v1::RegisterWorkerResponse worker;
  grpc::ClientContext c1;
  ASSERT_TRUE(workers.RegisterWorker(&c1, reg, &worker).ok());
  for (int i = 0; i < 4; ++i) {
    v1::LeaseTaskRequest lease;
    lease.set_worker_id(worker.worker_id());
    lease.mutable_wait()->set_seconds(5);
    v1::LeaseTaskResponse leased;
    grpc::ClientContext c2;
    ASSERT_TRUE(workers.LeaseTask(&c2, lease, &leased).ok());
    ASSERT_TRUE(leased.has_task()) << "task " << i;
    const v1::Task& t = leased.task();
    EXPECT_EQ(t.job_id(), job_id);
    for (int step = 1; step <= 3; ++step) {
      v1::HeartbeatRequest hb;
      hb.set_lease_id(t.lease_id());
      hb.set_fencing_token(t.fencing_token());
      hb.mutable_progress()->set_step(step);
      hb.mutable_progress()->set_total_steps(3);
      if (with_logs) {
        v1::LogLine* l = hb.add_logs();
        l->set_severity(v1::LOG_SEVERITY_INFO);
        l->set_message(absl::StrCat(v1::Stage_Name(t.kind()), " step ", step));
      }
      v1::HeartbeatResponse resp;
      grpc::ClientContext c3;
      ASSERT_TRUE(workers.Heartbeat(&c3, hb, &resp).ok());
      ASSERT_EQ(resp.action(), v1::HEARTBEAT_ACTION_CONTINUE);
    }
    v1::CompleteTaskRequest done;
    done.set_lease_id(t.lease_id());
    done.set_fencing_token(t.fencing_token());
    done.mutable_outputs()->set_output_path(t.output_path());
    done.mutable_outputs()->set_evaluation_report_id(t.evaluation_report_id());
    if (t.kind() == v1::STAGE_PUBLISH) {
      done.mutable_outputs()->set_artifact_path(t.output_path() + "/model");
    }
    v1::CompleteTaskResponse ok;
    grpc::ClientContext c4;
    grpc::Status s = workers.CompleteTask(&c4, done, &ok);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
}

TEST_F(JobServiceTest, WatchStreamsTheSnapshotThenEveryChangeAndEnds) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  watch.set_include_logs(true);
  auto ctx = As("acme");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  std::vector<v1::JobEvent> events;
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  events.push_back(e);
  std::thread worker([&] { RunJobToTheEnd(*workers_, job.job_id(), /*with_logs=*/true); });
  while (reader->Read(&e)) events.push_back(e);
  worker.join();
  grpc::Status end = reader->Finish();
  EXPECT_TRUE(end.ok()) << end.error_message();

  ASSERT_TRUE(events.front().has_snapshot());
  EXPECT_EQ(events.front().snapshot().state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(events.back().has_state_change());
  EXPECT_EQ(events.back().state_change().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(events.back().state_change().job().state(), v1::JOB_STATE_SUCCEEDED);
  int state_changes = 0, stage_changes = 0, progress = 0, logs = 0;
  int64_t sequence = events.front().sequence();
  for (size_t i = 1; i < events.size(); ++i) {
    const v1::JobEvent& ev = events[i];
    if (ev.has_state_change() || ev.has_stage_change()) {
      EXPECT_EQ(ev.sequence(), sequence + 1) << "event " << i << " skipped a change";
      sequence = ev.sequence();
    } else {
      EXPECT_EQ(ev.sequence(), sequence) << "event " << i;
    }
    state_changes += ev.has_state_change();
    stage_changes += ev.has_stage_change();
    progress += ev.has_progress();
    logs += ev.has_log();
  }
  EXPECT_EQ(state_changes, 2);  // RUNNING, SUCCEEDED
  EXPECT_EQ(stage_changes, 8);  // each of 4 stages starts and ends
  EXPECT_GE(progress, 4);       // at least the first of each task (later ones may coalesce)
  EXPECT_GE(logs, 12);          // the worker's lines, plus the scheduler's
}

TEST_F(JobServiceTest, WatchingATerminalJobSendsTheSnapshotAndEnds) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  cancel.set_reason("changed my mind");
  v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(As("acme").get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  auto ctx = As("acme");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.snapshot().state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(JobServiceTest, SlowWatcherLosesLogLinesBeyondTheBufferAndIsToldHowMany) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  v1::RegisterWorkerRequest reg;
  reg.mutable_resources()->set_cpu_cores(1);
  reg.mutable_resources()->set_memory_bytes(1 << 30);
  v1::RegisterWorkerResponse worker;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(workers_->RegisterWorker(&c, reg, &worker).ok());
  }
  v1::LeaseTaskRequest lease;
  lease.set_worker_id(worker.worker_id());
  v1::LeaseTaskResponse leased;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(workers_->LeaseTask(&c, lease, &leased).ok());
    ASSERT_TRUE(leased.has_task());
  }
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  watch.set_include_logs(true);
  // A client whose transport buffers little (no flow-control window growth),
  // so that not reading soon holds writes back in the scheduler.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16384);
  auto slow = v1::JobService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", scheduler_->port()), grpc::InsecureChannelCredentials(), args));
  auto ctx = As("acme");
  auto reader = slow->WatchJob(ctx.get(), watch);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));  // the snapshot; then the client stops reading
  constexpr int kBeats = 6, kLines = 1000;
  for (int b = 0; b < kBeats; ++b) {
    v1::HeartbeatRequest hb;
    hb.set_lease_id(leased.task().lease_id());
    hb.set_fencing_token(leased.task().fencing_token());
    for (int i = 0; i < kLines; ++i) {
      hb.add_logs()->set_message(absl::StrCat("line ", b * kLines + i, " ", std::string(900, '.')));
    }
    v1::HeartbeatResponse resp;
    grpc::ClientContext c;
    ASSERT_TRUE(workers_->Heartbeat(&c, hb, &resp).ok());
    absl::SleepFor(absl::Milliseconds(100));  // several poll rounds of the watcher
  }
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(As("acme").get(), cancel, &cancelled).ok());
  int64_t lines = 0, dropped = 0;
  bool ended_cancelled = false;
  while (reader->Read(&e)) {
    if (e.has_log()) ++lines;
    if (e.has_log_gap()) dropped += e.log_gap().dropped_lines();
    ended_cancelled = e.has_state_change() && e.state_change().state() == v1::JOB_STATE_CANCELLED;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(ended_cancelled);
  EXPECT_GT(dropped, 0) << "5 MB of lines fit a 1000-line buffer plus the transport";
  // The worker's lines and the scheduler's "cancelled" line: each is either
  // sent or counted in a gap.
  EXPECT_EQ(lines + dropped, kBeats * kLines + 1);
}

TEST_F(JobServiceTest, ShutdownEndsWatchesWithUnavailable) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  auto ctx = As("acme");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  scheduler_->Shutdown();
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(JobServiceTest, ListAndLogsOverGrpc) {
  for (int i = 0; i < 3; ++i) {
    v1::Job job;
    v1::SubmitConversionRequest r = ValidRequest();
    (*r.mutable_labels())["run"] = absl::StrCat(i);
    ASSERT_TRUE(Submit(r, &job).ok());
  }
  v1::ListJobsRequest list;
  list.set_page_size(2);
  v1::ListJobsResponse page;
  ASSERT_TRUE(jobs_->ListJobs(As("acme").get(), list, &page).ok());
  EXPECT_EQ(page.jobs_size(), 2);
  EXPECT_FALSE(page.next_page_token().empty());
  list.set_page_size(-1);
  grpc::Status s = jobs_->ListJobs(As("acme").get(), list, &page);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_size"));

  v1::GetJobLogsRequest logs;
  logs.set_job_id(page.jobs(0).job_id());
  v1::GetJobLogsResponse lines;
  ASSERT_TRUE(jobs_->GetJobLogs(As("acme").get(), logs, &lines).ok());
  ASSERT_GE(lines.lines_size(), 1);
  EXPECT_THAT(lines.lines(0).message(), HasSubstr("submitted"));
}

// spec.init_from: a converted model of the job's recipe and the teacher's
// shape, stored as its artifact path; anything else is refused at
// submission, naming the field and what is wrong.
TEST_F(JobServiceTest, InitFromAConvertedModel) {
  std::ifstream in(std::string(LINEARIZE_SOURCE_DIR) + "/tests/fixtures/models/llama/config.json");
  const std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(config.front(), '{');
  // A converted model's config.json, and its LoRA kept apart unless `lora` is false.
  auto student = [&](const std::string& dir, const std::string& recipe, bool lora = true) {
    fs::create_directories(root_ + "/" + dir + "/adapter");
    std::ofstream(root_ + "/" + dir + "/config.json")
        << "{\"linear_attention\": {\"recipe\": \"" << recipe << "\"}, " << config.substr(1);
    if (lora) std::ofstream(root_ + "/" + dir + "/adapter/adapter_model.safetensors") << "x";
  };
  student("models/lolcats", "lolcats");
  student("models/lizard", "lizard");
  student("models/merged", "lolcats", /*lora=*/false);
  // A deeper model.
  fs::create_directories(root_ + "/models/deep");
  {
    std::string deep = config;
    const size_t at = deep.find("\"num_hidden_layers\": 2");
    ASSERT_NE(at, std::string::npos);
    deep.replace(at, 22, "\"num_hidden_layers\": 3");
    std::ofstream(root_ + "/models/deep/config.json")
        << "{\"linear_attention\": {\"recipe\": \"lolcats\"}, " << deep.substr(1);
    std::ofstream(root_ + "/models/deep/adapter_model.safetensors") << "x";
  }

  v1::SubmitConversionRequest r = ValidRequest();
  r.mutable_spec()->mutable_init_from()->set_artifact_path("models/lolcats");
  v1::Job job;
  grpc::Status s = Submit(r, &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(job.spec().init_from().artifact_path(), "models/lolcats");

  struct Case {
    std::string path;
    grpc::StatusCode code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"models/tiny", grpc::StatusCode::INVALID_ARGUMENT, "is not a converted model"},
           {"models/merged", grpc::StatusCode::INVALID_ARGUMENT, "no LoRA kept apart"},
           {"models/lizard", grpc::StatusCode::INVALID_ARGUMENT,
            "converted with the lizard recipe; this job's is lolcats"},
           {"models/deep", grpc::StatusCode::INVALID_ARGUMENT,
            "has num_hidden_layers 3; the teacher has 2"},
           {"models/none", grpc::StatusCode::NOT_FOUND, "spec.init_from.artifact_path"}}) {
    r.mutable_spec()->mutable_init_from()->set_artifact_path(c.path);
    v1::Job ignored;
    s = Submit(r, &ignored);
    EXPECT_EQ(s.error_code(), c.code) << c.path << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.says)) << c.path;
  }
  // A job that has not succeeded has no model to start from.
  r.mutable_spec()->mutable_init_from()->set_job_id(job.job_id());
  v1::Job refused;
  s = Submit(r, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("spec.init_from.job_id"));
  // Once it has, its published model is stored as the path to start from.
  RunJobToTheEnd(*workers_, job.job_id(), /*with_logs=*/false);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  v1::Job done;
  ASSERT_TRUE(jobs_->GetJob(As("acme").get(), get, &done).ok());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_FALSE(done.artifact_path().empty());
  student(done.artifact_path(), "lolcats");
  v1::Job next;
  s = Submit(r, &next);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(next.spec().init_from().artifact_path(), done.artifact_path());
}

}  // namespace
}  // namespace linearize::scheduler::testing
