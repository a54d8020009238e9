// The job store's worker side, on SQLite and PostgreSQL: leasing order and
// eligibility, stage order and task inputs, heartbeats, expiry and resume
// from checkpoint, fencing, retries, worker lapse and deregistration,
// output checks and budgets.
#include <mutex>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/scheduler/store_fixture.h"

namespace linearize::scheduler::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class JobStoreTasks : public StoreTest {};

TEST_P(JobStoreTasks, LeasesByPriorityThenAge) {
  v1::Job old_low = Create(MakeJob("a", "", 0));
  clock_.Advance(absl::Seconds(1));
  v1::Job high = Create(MakeJob("b", "", 5));
  clock_.Advance(absl::Seconds(1));
  v1::Job new_low = Create(MakeJob("c", "", 0));
  std::string w = Register();
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    std::optional<v1::Task> t = Lease(w);
    ASSERT_TRUE(t.has_value());
    order.push_back(t->job_id());
  }
  EXPECT_THAT(order, ElementsAre(high.job_id(), old_low.job_id(), new_low.job_id()));
  EXPECT_FALSE(Lease(w).has_value()) << "later stages wait for the first";
}

TEST_P(JobStoreTasks, StagesRunInOrderAndFeedEachOther) {
  v1::Job job = Create(MakeJob("acme", "", 0, /*blocks=*/2));
  std::string w = Register();
  std::optional<v1::Task> b0 = Lease(w), b1 = Lease(w);
  ASSERT_TRUE(b0 && b1);
  EXPECT_EQ(b0->kind(), v1::STAGE_ATTENTION_TRANSFER);
  EXPECT_EQ(b0->layer_block().first_layer(), 0);
  EXPECT_EQ(b1->layer_block().first_layer(), 2);
  EXPECT_EQ(b0->attempt(), 1);
  EXPECT_EQ(b0->teacher_path(), "models/tiny");
  EXPECT_EQ(b0->spec().recipe().kind(), v1::RECIPE_KIND_LOLCATS);
  EXPECT_TRUE(b0->input_paths().empty());
  EXPECT_NE(b0->output_path(), b1->output_path());
  EXPECT_FALSE(Lease(w).has_value()) << "fine-tuning must wait for both blocks";

  v1::Job running = Get(job);
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.stage(), v1::STAGE_ATTENTION_TRANSFER);
  EXPECT_TRUE(running.has_start_time());
  EXPECT_EQ(running.stages(0).state(), v1::STAGE_STATE_RUNNING);

  ASSERT_TRUE(Complete(*b1, "maps").ok());  // out of order on purpose
  EXPECT_FALSE(Lease(w).has_value());
  ASSERT_TRUE(Complete(*b0, "maps").ok());
  EXPECT_EQ(Get(job).stages(0).state(), v1::STAGE_STATE_SUCCEEDED);
  EXPECT_EQ(Get(job).stages(0).tasks_succeeded(), 2);

  std::optional<v1::Task> ft = Lease(w);
  ASSERT_TRUE(ft.has_value());
  EXPECT_EQ(ft->kind(), v1::STAGE_FINETUNE);
  // Inputs in layer order.
  EXPECT_THAT(ft->input_paths(),
              ElementsAre(b0->output_path() + "/maps", b1->output_path() + "/maps"));
  ASSERT_TRUE(Complete(*ft, "lora").ok());

  std::optional<v1::Task> ev = Lease(w);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind(), v1::STAGE_EVALUATE);
  EXPECT_FALSE(ev->evaluation_report_id().empty());
  EXPECT_EQ(Get(job).evaluation_report_id(), ev->evaluation_report_id());
  EXPECT_EQ(ev->input_paths_size(), 3);
  ASSERT_TRUE(Complete(*ev).ok());

  std::optional<v1::Task> pub = Lease(w);
  ASSERT_TRUE(pub.has_value());
  EXPECT_EQ(pub->kind(), v1::STAGE_PUBLISH);
  EXPECT_THAT(pub->input_paths(), ElementsAre(b0->output_path() + "/maps",
                                              b1->output_path() + "/maps",
                                              ft->output_path() + "/lora"));
  ASSERT_TRUE(Complete(*pub).ok());

  v1::Job done = Get(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.artifact_path(), pub->output_path() + "/model");
  EXPECT_EQ(done.model_name(), done.spec().output_model_name());
  EXPECT_TRUE(done.has_end_time());
  EXPECT_FALSE(done.has_progress());
  for (const v1::StageSummary& s : done.stages()) {
    EXPECT_EQ(s.state(), v1::STAGE_STATE_SUCCEEDED) << v1::Stage_Name(s.stage());
  }
  absl::StatusOr<v1::Job> published = Store().FindPublishedModel("acme", done.model_name());
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ(published->job_id(), job.job_id());
  EXPECT_EQ(Store().FindPublishedModel("other", done.model_name()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(JobStoreTasks, TenantRunningLimitHoldsBackNewJobs) {
  options_.max_running_jobs_per_tenant = 1;
  v1::Job a1 = Create(MakeJob("a", "", 0, 2));
  clock_.Advance(absl::Seconds(1));
  v1::Job a2 = Create(MakeJob("a"));
  clock_.Advance(absl::Seconds(1));
  v1::Job b1 = Create(MakeJob("b"));
  std::string w = Register();
  std::optional<v1::Task> t1 = Lease(w);
  ASSERT_TRUE(t1);
  EXPECT_EQ(t1->job_id(), a1.job_id());
  // a1 is RUNNING, so its second block may run; a2 may not start.
  std::optional<v1::Task> t2 = Lease(w);
  ASSERT_TRUE(t2);
  EXPECT_EQ(t2->job_id(), a1.job_id());
  std::optional<v1::Task> t3 = Lease(w);
  ASSERT_TRUE(t3);
  EXPECT_EQ(t3->job_id(), b1.job_id()) << "tenant a is at its limit";
  EXPECT_FALSE(Lease(w).has_value());
  ASSERT_TRUE(Store().CancelJob("a", a1.job_id(), "").ok());
  std::optional<v1::Task> t4 = Lease(w);
  ASSERT_TRUE(t4);
  EXPECT_EQ(t4->job_id(), a2.job_id());
}

TEST_P(JobStoreTasks, MaxParallelTasksOfAJob) {
  NewJob j = MakeJob("acme", "", 0, 3);
  j.job.mutable_spec()->mutable_budget()->set_max_parallel_tasks(2);
  Create(j);
  std::string w = Register();
  std::optional<v1::Task> t1 = Lease(w), t2 = Lease(w);
  ASSERT_TRUE(t1 && t2);
  EXPECT_FALSE(Lease(w).has_value());
  ASSERT_TRUE(Complete(*t1).ok());
  EXPECT_TRUE(Lease(w).has_value());
}

TEST_P(JobStoreTasks, WorkerCapabilities) {
  Create(MakeJob("acme", "", 0, 0, /*gpus=*/1));
  std::string cpu = Register();
  EXPECT_FALSE(Lease(cpu).has_value()) << "a GPU task went to a CPU worker";
  absl::StatusOr<std::optional<v1::Task>> too_many = Store().LeaseTask(LeaseFor(cpu, 1));
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("free_gpus"));

  v1::RegisterWorkerRequest gpu_req = CpuWorker();
  v1::GpuDevice* gpu = gpu_req.mutable_resources()->add_gpus();
  gpu->set_memory_bytes(int64_t{80} << 30);
  gpu_req.add_kinds(v1::STAGE_FINETUNE);
  std::string finetune_only = Register(gpu_req);
  EXPECT_FALSE(Lease(finetune_only, 1).has_value()) << "stage 1 went to a FINETUNE-only worker";
  gpu_req.clear_kinds();
  std::string gpu_worker = Register(gpu_req);
  EXPECT_FALSE(Lease(gpu_worker, 0).has_value()) << "no GPU free";
  std::optional<v1::Task> t = Lease(gpu_worker, 1);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->gpus(), 1);

  absl::StatusOr<std::optional<v1::Task>> unknown = Store().LeaseTask(LeaseFor("worker-nope"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("worker_id"));
}

TEST_P(JobStoreTasks, HeartbeatExtendsTheLeaseAndRecordsProgress) {
  options_.lease_duration = absl::Seconds(30);
  v1::Job job = Create(MakeJob("acme", "", 0, 2));
  std::string w = Register();
  std::optional<v1::Task> a = Lease(w), b = Lease(w);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->lease_deadline().seconds(), absl::ToUnixSeconds(clock_.Now()) + 30);
  clock_.Advance(absl::Seconds(20));
  v1::HeartbeatResponse r = Beat(*a, a->output_path() + "/step-10", 10);
  EXPECT_EQ(r.action(), v1::HEARTBEAT_ACTION_CONTINUE);
  EXPECT_EQ(r.lease_deadline().seconds(), absl::ToUnixSeconds(clock_.Now()) + 30);
  Beat(*b, "", 30);
  clock_.Advance(absl::Seconds(20));  // 40 s after the lease: alive thanks to the heartbeat
  EXPECT_EQ(Beat(*a).action(), v1::HEARTBEAT_ACTION_CONTINUE);
  v1::Job j = Get(job);
  // Steps summed over the running blocks, loss averaged.
  EXPECT_EQ(j.progress().step(), 40);
  EXPECT_EQ(j.progress().total_steps(), 200);
  EXPECT_NEAR(j.progress().loss(), (0.1 + 1.0 / 30) / 2, 1e-12);
  EXPECT_FALSE(j.progress().has_layer_block());
  EXPECT_EQ(j.progress().stage(), v1::STAGE_ATTENTION_TRANSFER);
}

TEST_P(JobStoreTasks, ExpiredLeaseIsRequeuedAndResumesFromTheLastCheckpoint) {
  options_.lease_duration = absl::Seconds(30);
  v1::Job job = Create(MakeJob("acme"));
  std::string w1 = Register(), w2 = Register();
  std::optional<v1::Task> first = Lease(w1);
  ASSERT_TRUE(first);
  const std::string ckpt = first->output_path() + "/step-200";
  Beat(*first, ckpt, 200);
  clock_.Advance(absl::Seconds(31));
  absl::StatusOr<SweepResult> swept = Store().Sweep();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->expired_leases, 1);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING) << "a lost worker does not end the job";

  std::optional<v1::Task> second = Lease(w2);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->task_id(), first->task_id());
  EXPECT_EQ(second->attempt(), 2);
  EXPECT_GT(second->fencing_token(), first->fencing_token());
  EXPECT_EQ(second->resume_checkpoint_path(), ckpt);
  EXPECT_NE(second->output_path(), first->output_path());
}

TEST_P(JobStoreTasks, AWorkerThatLostItsLeaseCannotCommit) {
  options_.lease_duration = absl::Seconds(30);
  v1::Job job = Create(MakeJob("acme"));
  std::string w1 = Register(), w2 = Register();
  std::optional<v1::Task> stale = Lease(w1);
  ASSERT_TRUE(stale);
  clock_.Advance(absl::Seconds(31));
  std::optional<v1::Task> fresh = Lease(w2);  // leasing requeues the overdue lease first
  ASSERT_TRUE(fresh);
  ASSERT_EQ(fresh->task_id(), stale->task_id());

  // The old worker comes back.
  EXPECT_EQ(Beat(*stale).action(), v1::HEARTBEAT_ACTION_LEASE_LOST);
  absl::Status done = Complete(*stale);
  EXPECT_EQ(done.code(), absl::StatusCode::kFailedPrecondition);
  v1::FailTaskRequest fail;
  fail.set_lease_id(stale->lease_id());
  fail.set_fencing_token(stale->fencing_token());
  fail.set_message("boom");
  EXPECT_EQ(Store().FailTask(fail).status().code(), absl::StatusCode::kFailedPrecondition);
  // Its token on the new lease is no good either.
  v1::Task forged = *fresh;
  forged.set_fencing_token(stale->fencing_token());
  EXPECT_EQ(Beat(forged).action(), v1::HEARTBEAT_ACTION_LEASE_LOST);
  EXPECT_EQ(Complete(forged).code(), absl::StatusCode::kFailedPrecondition);
  v1::Task unknown = *fresh;
  unknown.set_lease_id("lease-unknown");
  EXPECT_EQ(Complete(unknown).code(), absl::StatusCode::kNotFound);

  // The successor's result stands.
  ASSERT_TRUE(Complete(*fresh, "winner").ok());
  std::optional<v1::Task> next = Lease(w2);
  ASSERT_TRUE(next);
  EXPECT_THAT(next->input_paths(), ElementsAre(fresh->output_path() + "/winner"));
  EXPECT_EQ(Complete(*stale).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobStoreTasks, CompletingTwiceIsHarmless) {
  v1::Job job = Create(MakeJob("acme", "", 0, 2));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  ASSERT_TRUE(Complete(*t).ok());
  v1::Job once = Get(job);
  ASSERT_TRUE(Complete(*t).ok());
  v1::Job twice = Get(job);
  EXPECT_EQ(twice.stages(0).tasks_succeeded(), 1);
  EXPECT_EQ(twice.update_time().seconds(), once.update_time().seconds());
}

TEST_P(JobStoreTasks, RetryableFailuresRetryWithBackoffThenExhaust) {
  options_.max_attempts = 2;
  options_.retry_backoff = absl::Seconds(10);
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::FailTaskRequest fail;
  fail.set_lease_id(t->lease_id());
  fail.set_fencing_token(t->fencing_token());
  fail.set_code(v1::FAILURE_CODE_OUT_OF_MEMORY);
  fail.set_message("CUDA out of memory at layer 3");
  fail.set_retryable(true);
  fail.set_checkpoint_path(t->output_path() + "/ckpt");
  absl::StatusOr<v1::FailTaskResponse> r = Store().FailTask(fail);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->will_retry());
  EXPECT_EQ(r->retry_time().seconds(), absl::ToUnixSeconds(clock_.Now()) + 10);
  EXPECT_FALSE(Lease(w).has_value()) << "backoff not honoured";
  clock_.Advance(absl::Seconds(10));
  std::optional<v1::Task> retry = Lease(w);
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->attempt(), 2);
  EXPECT_EQ(retry->resume_checkpoint_path(), t->output_path() + "/ckpt");
  EXPECT_THAT(Get(job).status_message(), HasSubstr("attempt 2"));

  fail.set_lease_id(retry->lease_id());
  fail.set_fencing_token(retry->fencing_token());
  fail.clear_checkpoint_path();
  r = Store().FailTask(fail);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->will_retry());
  v1::Job failed = Get(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.failure().code(), v1::FAILURE_CODE_RETRIES_EXHAUSTED);
  EXPECT_EQ(failed.failure().task_id(), t->task_id());
  EXPECT_EQ(failed.failure().attempts(), 2);
  EXPECT_EQ(failed.failure().stage(), v1::STAGE_ATTENTION_TRANSFER);
  EXPECT_THAT(failed.failure().message(), HasSubstr("CUDA out of memory"));
  EXPECT_EQ(failed.stages(0).state(), v1::STAGE_STATE_FAILED);
  EXPECT_FALSE(Lease(w).has_value()) << "a failed job's tasks were leased";
}

TEST_P(JobStoreTasks, NonRetryableFailureFailsTheJob) {
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::FailTaskRequest fail;
  fail.set_lease_id(t->lease_id());
  fail.set_fencing_token(t->fencing_token());
  fail.set_code(v1::FAILURE_CODE_INVALID_INPUT);
  fail.set_message("data/train.jsonl line 3: missing field \"text\"");
  absl::StatusOr<v1::FailTaskResponse> r = Store().FailTask(fail);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->will_retry());
  v1::Job failed = Get(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.failure().code(), v1::FAILURE_CODE_INVALID_INPUT);
  EXPECT_THAT(failed.failure().message(), HasSubstr("missing field"));
}

TEST_P(JobStoreTasks, ExpiryCountsAsAnAttempt) {
  options_.max_attempts = 2;
  options_.lease_duration = absl::Seconds(5);
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    std::optional<v1::Task> t = Lease(w);
    ASSERT_TRUE(t) << "attempt " << attempt;
    EXPECT_EQ(t->attempt(), attempt);
    clock_.Advance(absl::Seconds(6));
    Beat(*t);  // keeps the worker alive; the lease itself is over
  }
  absl::StatusOr<SweepResult> swept = Store().Sweep();
  ASSERT_TRUE(swept.ok());
  v1::Job failed = Get(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.failure().code(), v1::FAILURE_CODE_RETRIES_EXHAUSTED);
}

TEST_P(JobStoreTasks, CancelledJobTellsItsWorkerToStop) {
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  ASSERT_TRUE(Store().CancelJob("acme", job.job_id(), "").ok());
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_CANCEL);
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_LEASE_LOST);  // the lease is released
  EXPECT_EQ(Complete(*t).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobStoreTasks, CompleteOnCancelledJobIsRefused) {
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  ASSERT_TRUE(Store().CancelJob("acme", job.job_id(), "").ok());
  absl::Status s = Complete(*t);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("CANCELLED"));
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_CANCELLED);
}

TEST_P(JobStoreTasks, SilentWorkersLapseAndTheirTasksMoveOn) {
  options_.heartbeat_interval = absl::Seconds(10);
  options_.lease_duration = absl::Seconds(600);
  v1::Job job = Create(MakeJob("acme"));
  std::string w1 = Register(CpuWorker("boot-1")), w2 = Register();
  std::optional<v1::Task> t = Lease(w1);
  ASSERT_TRUE(t);
  clock_.Advance(absl::Seconds(20));
  EXPECT_FALSE(Lease(w2).has_value());  // keeps w2 alive; w1 is silent
  clock_.Advance(absl::Seconds(11));
  absl::StatusOr<SweepResult> swept = Store().Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(swept->lapsed_workers, 1);
  EXPECT_EQ(swept->expired_leases, 1);
  absl::StatusOr<std::optional<v1::Task>> lapsed = Store().LeaseTask(LeaseFor(w1));
  EXPECT_EQ(lapsed.status().code(), absl::StatusCode::kNotFound);
  std::optional<v1::Task> moved = Lease(w2);
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->task_id(), t->task_id());
  EXPECT_EQ(moved->attempt(), 2);
  // Registering again with the same key revives the same worker.
  absl::StatusOr<WorkerRegistration> again = Store().RegisterWorker(CpuWorker("boot-1"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->worker_id, w1);
  EXPECT_FALSE(again->created);
  EXPECT_TRUE(Store().LeaseTask(LeaseFor(w1)).ok());
  v1::RegisterWorkerRequest different = CpuWorker("boot-1");
  different.set_hostname("elsewhere");
  absl::StatusOr<WorkerRegistration> clash = Store().RegisterWorker(different);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(clash.status().message(), HasSubstr("request_id"));
}

TEST_P(JobStoreTasks, DeregisterRequeuesWithoutCountingAnAttempt) {
  v1::Job job = Create(MakeJob("acme"));
  std::string w1 = Register(), w2 = Register();
  std::optional<v1::Task> t = Lease(w1);
  ASSERT_TRUE(t);
  ASSERT_TRUE(Store().DeregisterWorker(w1).ok());
  ASSERT_TRUE(Store().DeregisterWorker("worker-unknown").ok());
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_LEASE_LOST);
  std::optional<v1::Task> again = Lease(w2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->task_id(), t->task_id());
  EXPECT_EQ(again->attempt(), 1);
  EXPECT_GT(again->fencing_token(), t->fencing_token());
  EXPECT_EQ(Store().LeaseTask(LeaseFor(w1)).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(JobStoreTasks, OutputsMustStayInsideTheLeaseDirectory) {
  Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::CompleteTaskRequest r;
  r.set_lease_id(t->lease_id());
  r.set_fencing_token(t->fencing_token());
  absl::Status s = Store().CompleteTask(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("outputs"));
  for (const std::string& bad : {std::string("jobs/other"), t->output_path() + "/../../x",
                                 "/" + t->output_path(), t->output_path() + "x"}) {
    r.mutable_outputs()->set_output_path(bad);
    s = Store().CompleteTask(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("outputs.output_path")) << bad;
  }
  v1::HeartbeatRequest hb;
  hb.set_lease_id(t->lease_id());
  hb.set_fencing_token(t->fencing_token());
  hb.set_checkpoint_path("elsewhere/ckpt");
  absl::StatusOr<v1::HeartbeatResponse> beat = Store().Heartbeat(hb);
  EXPECT_EQ(beat.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(beat.status().message(), HasSubstr("checkpoint_path"));
  r.mutable_outputs()->set_output_path(t->output_path());
  r.mutable_outputs()->set_artifact_path(t->output_path());
  s = Store().CompleteTask(r);
  EXPECT_THAT(s.message(), HasSubstr("outputs.artifact_path"));
  r.mutable_outputs()->clear_artifact_path();
  EXPECT_TRUE(Store().CompleteTask(r).ok());
}

TEST_P(JobStoreTasks, PublishNeedsAnArtifactPath) {
  NewJob j = MakeJob("acme");
  j.tasks = {{v1::STAGE_PUBLISH, std::nullopt, 0, 0}};
  Create(j);
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::CompleteTaskRequest r;
  r.set_lease_id(t->lease_id());
  r.set_fencing_token(t->fencing_token());
  r.mutable_outputs()->set_output_path(t->output_path());
  absl::Status s = Store().CompleteTask(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("outputs.artifact_path"));
}

TEST_P(JobStoreTasks, WallTimeBudget) {
  NewJob j = MakeJob("acme");
  j.job.mutable_spec()->mutable_budget()->mutable_max_wall_time()->set_seconds(60);
  v1::Job job = Create(j);
  clock_.Advance(absl::Hours(1));  // queued time does not count
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  clock_.Advance(absl::Seconds(30));
  ASSERT_TRUE(Store().Sweep().ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_CONTINUE);
  clock_.Advance(absl::Seconds(31));
  absl::StatusOr<SweepResult> swept = Store().Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(swept->failed_jobs, 1);
  v1::Job failed = Get(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.failure().code(), v1::FAILURE_CODE_BUDGET_EXCEEDED);
  EXPECT_THAT(failed.failure().message(), HasSubstr("max_wall_time"));
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_CANCEL);
}

TEST_P(JobStoreTasks, TokenBudget) {
  NewJob j = MakeJob("acme");
  j.job.mutable_spec()->mutable_budget()->set_max_tokens(1000);
  v1::Job job = Create(j);
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::HeartbeatRequest hb;
  hb.set_lease_id(t->lease_id());
  hb.set_fencing_token(t->fencing_token());
  hb.mutable_usage()->set_tokens_processed(900);
  absl::StatusOr<v1::HeartbeatResponse> r = Store().Heartbeat(hb);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action(), v1::HEARTBEAT_ACTION_CONTINUE);
  hb.mutable_usage()->set_tokens_processed(1001);
  r = Store().Heartbeat(hb);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action(), v1::HEARTBEAT_ACTION_CANCEL);
  v1::Job failed = Get(job);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.failure().code(), v1::FAILURE_CODE_BUDGET_EXCEEDED);
  EXPECT_EQ(failed.usage().tokens_processed(), 1001);
}

TEST_P(JobStoreTasks, UsageAddsUpOverAttempts) {
  v1::Job job = Create(MakeJob("acme"));
  std::string w = Register();
  std::optional<v1::Task> t = Lease(w);
  ASSERT_TRUE(t);
  v1::FailTaskRequest fail;
  fail.set_lease_id(t->lease_id());
  fail.set_fencing_token(t->fencing_token());
  fail.set_retryable(true);
  fail.mutable_usage()->set_gpu_seconds(10);
  fail.mutable_usage()->set_peak_gpu_memory_bytes(100);
  ASSERT_TRUE(Store().FailTask(fail).ok());
  std::optional<v1::Task> retry = Lease(w);
  ASSERT_TRUE(retry);
  v1::CompleteTaskRequest done;
  done.set_lease_id(retry->lease_id());
  done.set_fencing_token(retry->fencing_token());
  done.mutable_outputs()->set_output_path(retry->output_path());
  done.mutable_outputs()->mutable_final_progress()->set_loss(0.25);
  done.mutable_usage()->set_gpu_seconds(5);
  done.mutable_usage()->set_peak_gpu_memory_bytes(300);
  ASSERT_TRUE(Store().CompleteTask(done).ok());
  v1::Job j = Get(job);
  EXPECT_DOUBLE_EQ(j.usage().gpu_seconds(), 15);
  EXPECT_EQ(j.usage().peak_gpu_memory_bytes(), 300);
  EXPECT_DOUBLE_EQ(j.stages(0).usage().gpu_seconds(), 15);
  EXPECT_DOUBLE_EQ(j.stages(0).final_loss(), 0.25);
}

// Two scheduler replicas on one store, leasing from many threads at once.
TEST_P(JobStoreTasks, ReplicasLeaseEachTaskExactlyOnceAndHonourTenantLimits) {
  options_.max_running_jobs_per_tenant = 3;
  constexpr int kJobs = 24;
  for (int i = 0; i < kJobs; ++i) {
    NewJob j = MakeJob(i % 2 ? "odd" : "even");
    j.tasks = {{v1::STAGE_PUBLISH, std::nullopt, 0, 0}};
    Create(j);
  }
  absl::StatusOr<std::unique_ptr<JobStore>> other = OpenJobStore(url_, options_);
  ASSERT_TRUE(other.ok()) << other.status();
  JobStore* replicas[2] = {&Store(), other->get()};
  std::vector<std::string> workers;
  for (int i = 0; i < 8; ++i) workers.push_back(Register());

  std::mutex mu;
  std::vector<std::string> leased;
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 10; ++round) {
        absl::StatusOr<std::optional<v1::Task>> t =
            replicas[i % 2]->LeaseTask(LeaseFor(workers[i]));
        ASSERT_TRUE(t.ok()) << t.status();
        if (!t->has_value()) continue;
        std::lock_guard<std::mutex> lock(mu);
        leased.push_back((*t)->task_id());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> unique(leased.begin(), leased.end());
  EXPECT_EQ(unique.size(), leased.size()) << "a task was leased twice";
  // Nothing completes, so each tenant stops at its limit of running jobs.
  EXPECT_EQ(leased.size(), 6u);
  for (const char* tenant : {"odd", "even"}) {
    v1::ListJobsRequest running;
    running.add_states(v1::JOB_STATE_RUNNING);
    absl::StatusOr<v1::ListJobsResponse> r = Store().ListJobs(tenant, running);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->jobs_size(), 3) << tenant;
  }
}

LINEARIZE_STORE_BACKENDS(JobStoreTasks);

}  // namespace
}  // namespace linearize::scheduler::testing
