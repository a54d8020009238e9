// The scheduler on the shared server plumbing: bearer tokens and per-role
// access (a refused call changes nothing), and the platform metrics that
// deploy/'s dashboard and alerts read.
#include <fstream>
#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "common/metrics/registry.h"
#include "tests/unit/scheduler/service_fixture.h"

namespace linearize::scheduler::testing {
namespace {

constexpr char kUserToken[] = "user-token-0123456789";
constexpr char kWorkerToken[] = "worker-token-0123456789";

std::unique_ptr<grpc::ClientContext> WithToken(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return ctx;
}

v1::RegisterWorkerRequest Registration(const std::string& hostname) {
  v1::RegisterWorkerRequest r;
  r.set_hostname(hostname);
  r.set_request_id("register-1");
  r.mutable_resources()->set_cpu_cores(1);
  r.mutable_resources()->set_memory_bytes(1 << 30);
  return r;
}

// The value of a counter or gauge series (a histogram's sample count), or
// nullopt when the series does not exist.
std::optional<double> Sample(const metrics::Registry& registry, const std::string& name,
                             const metrics::Labels& labels) {
  for (const metrics::MetricFamily& f : registry.Collect()) {
    if (f.name != name) continue;
    for (const metrics::ClientMetric& m : f.metric) {
      metrics::Labels got;
      for (const auto& l : m.label) got[l.name] = l.value;
      if (got != labels) continue;
      switch (f.type) {
        case metrics::MetricType::kCounter: return m.counter.value;
        case metrics::MetricType::kGauge: return m.gauge.value;
        case metrics::MetricType::kHistogram: return static_cast<double>(m.histogram.sample_count);
      }
    }
  }
  return std::nullopt;
}

class SchedulerPlatformTest : public SchedulerServiceTest {
 protected:
  // Waits up to 10 s for a series to reach `want`.
  bool Eventually(const std::string& name, const metrics::Labels& labels, double want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (Sample(scheduler_->registry(), name, labels) == want) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << name << " never reached " << want << " (now "
                  << Sample(scheduler_->registry(), name, labels).value_or(-1) << ")";
    return false;
  }
};

TEST_F(SchedulerPlatformTest, TokensAndRolesGuardEveryCall) {
  const std::string tokens = dir_ + "/tokens";
  std::ofstream(tokens) << "# token tenant role\n"
                        << kUserToken << " acme user\n"
                        << kWorkerToken << " ops worker\n";
  options_.server.tokens_file = tokens;
  StartScheduler();

  v1::GetJobRequest get;
  get.set_job_id("job-1");
  v1::Job job;
  EXPECT_EQ(jobs_->GetJob(WithToken("").get(), get, &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(jobs_->GetJob(WithToken("wrong-token-0123456789").get(), get, &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The tenant header means nothing once tokens are on.
  EXPECT_EQ(jobs_->GetJob(As("acme").get(), get, &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  grpc::Status s = jobs_->SubmitConversion(WithToken(kUserToken).get(), ValidRequest(), &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(job.tenant(), "acme");

  // A user may not call WorkerService, and the refused call registers
  // nothing: the same request_id with another request still works.
  v1::RegisterWorkerResponse reg;
  s = workers_->RegisterWorker(WithToken(kUserToken).get(), Registration("user"), &reg);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("WorkerService"));
  s = workers_->RegisterWorker(WithToken(kWorkerToken).get(), Registration("worker"), &reg);
  ASSERT_TRUE(s.ok()) << s.error_message();

  // A user's LeaseTask is refused before it takes the task.
  v1::LeaseTaskRequest lease;
  lease.set_worker_id(reg.worker_id());
  v1::LeaseTaskResponse leased;
  s = workers_->LeaseTask(WithToken(kUserToken).get(), lease, &leased);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  leased.Clear();
  s = workers_->LeaseTask(WithToken(kWorkerToken).get(), lease, &leased);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(leased.has_task()) << "the refused call took the task";

  // A worker may not call JobService.
  EXPECT_EQ(jobs_->GetJob(WithToken(kWorkerToken).get(), get, &job).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::WatchJobRequest watch;
  watch.set_job_id(leased.task().job_id());
  auto ctx = WithToken("");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  v1::JobEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SchedulerPlatformTest, MetricsFollowTheStoreAndTheWorkers) {
  options_.store.lease_duration = absl::Milliseconds(800);
  options_.store.heartbeat_interval = absl::Milliseconds(200);
  options_.sweep_interval = absl::Milliseconds(50);
  options_.stats_interval = absl::Milliseconds(50);
  StartScheduler();

  v1::Job kept, cancelled;
  ASSERT_TRUE(Submit(ValidRequest(), &kept).ok());
  ASSERT_TRUE(Submit(ValidRequest(), &cancelled).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(cancelled.job_id());
  ASSERT_TRUE(jobs_->CancelJob(As("acme").get(), cancel, &cancelled).ok());
  Eventually("linearize_jobs", {{"state", "queued"}}, 1);
  Eventually("linearize_jobs", {{"state", "cancelled"}}, 1);
  Eventually("linearize_jobs", {{"state", "succeeded"}}, 0);
  // Only the kept job's first stage can run: later stages wait for it.
  Eventually("linearize_queue_depth", {}, 1);

  v1::RegisterWorkerResponse reg;
  ASSERT_TRUE(workers_->RegisterWorker(As("").get(), Registration("w"), &reg).ok());
  const std::string worker = reg.worker_id();
  v1::LeaseTaskRequest lease;
  lease.set_worker_id(worker);
  v1::LeaseTaskResponse leased;
  ASSERT_TRUE(workers_->LeaseTask(As("").get(), lease, &leased).ok());
  ASSERT_TRUE(leased.has_task());
  const v1::Task task = leased.task();
  ASSERT_EQ(task.kind(), v1::STAGE_ATTENTION_TRANSFER);
  Eventually("linearize_jobs", {{"state", "running"}}, 1);
  Eventually("linearize_queue_depth", {}, 0);

  v1::HeartbeatRequest hb;
  hb.set_lease_id(task.lease_id());
  hb.set_fencing_token(task.fencing_token());
  hb.mutable_progress()->set_tokens_per_second(1234.5);
  hb.mutable_usage()->set_peak_gpu_memory_bytes(int64_t{3} << 30);
  v1::HeartbeatResponse hb_resp;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(workers_->Heartbeat(As("").get(), hb, &hb_resp).ok());
  }
  metrics::Registry& r = scheduler_->registry();
  EXPECT_EQ(Sample(r, "linearize_worker_heartbeats_total", {{"worker", worker}}), 2);
  EXPECT_EQ(Sample(r, "linearize_training_tokens_per_second", {{"worker", worker}}), 1234.5);
  EXPECT_EQ(Sample(r, "linearize_gpu_memory_bytes", {{"worker", worker}, {"gpu", "max"}}),
            double(int64_t{3} << 30));

  v1::CompleteTaskRequest done;
  done.set_lease_id(task.lease_id());
  done.set_fencing_token(task.fencing_token());
  done.mutable_outputs()->set_output_path(task.output_path());
  v1::CompleteTaskResponse done_resp;
  ASSERT_TRUE(workers_->CompleteTask(As("").get(), done, &done_resp).ok());
  ASSERT_TRUE(workers_->CompleteTask(As("").get(), done, &done_resp).ok());  // a repeat
  EXPECT_EQ(Sample(r, "linearize_task_duration_seconds", {{"kind", "attention_transfer"}}), 1)
      << "a completed task is observed once";
  EXPECT_EQ(Sample(r, "linearize_training_tokens_per_second", {{"worker", worker}}),
            std::nullopt)
      << "a worker without leases has no throughput series";
  EXPECT_EQ(scheduler_->metrics().tracked_leases(), 0);

  // The next stage's lease expires without a heartbeat.
  leased.Clear();
  ASSERT_TRUE(workers_->LeaseTask(As("").get(), lease, &leased).ok());
  ASSERT_TRUE(leased.has_task());
  EXPECT_EQ(leased.task().kind(), v1::STAGE_FINETUNE);
  Eventually("linearize_lease_expiries_total", {}, 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (scheduler_->metrics().tracked_leases() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(scheduler_->metrics().tracked_leases(), 0) << "the expired lease is never forgotten";
}

}  // namespace
}  // namespace linearize::scheduler::testing
