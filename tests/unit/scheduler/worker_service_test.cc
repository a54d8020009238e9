// WorkerService over a loopback gRPC server: registration checks, the
// LeaseTask long poll, fencing of a worker whose lease was taken over, and
// request limits.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "tests/unit/scheduler/service_fixture.h"

namespace linearize::scheduler::testing {
namespace {

using ::testing::HasSubstr;

class WorkerServiceTest : public SchedulerServiceTest {
 protected:
  void SetUp() override {
    SchedulerServiceTest::SetUp();
    options_.store.lease_duration = absl::Milliseconds(800);
    options_.store.heartbeat_interval = absl::Milliseconds(200);
    options_.sweep_interval = absl::Milliseconds(100);
    StartScheduler();
  }

  std::string Register() {
    v1::RegisterWorkerRequest reg;
    reg.set_hostname("sim");
    reg.mutable_resources()->set_cpu_cores(1);
    reg.mutable_resources()->set_memory_bytes(1 << 30);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = workers_->RegisterWorker(&ctx, reg, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.heartbeat_interval().nanos(), 200'000'000);
    EXPECT_EQ(resp.max_lease_wait().seconds(), 60);
    return resp.worker_id();
  }

  grpc::Status Lease(const std::string& worker, int wait_ms, v1::LeaseTaskResponse* out) {
    v1::LeaseTaskRequest r;
    r.set_worker_id(worker);
    r.mutable_wait()->set_seconds(wait_ms / 1000);
    r.mutable_wait()->set_nanos((wait_ms % 1000) * 1'000'000);
    grpc::ClientContext ctx;
    return workers_->LeaseTask(&ctx, r, out);
  }
};

TEST_F(WorkerServiceTest, RegistrationIsChecked) {
  v1::RegisterWorkerRequest reg;
  v1::RegisterWorkerResponse resp;
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->RegisterWorker(&ctx, reg, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("resources"));
  }
  reg.mutable_resources()->set_cpu_cores(1);
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->RegisterWorker(&ctx, reg, &resp);
    EXPECT_THAT(s.error_message(), HasSubstr("resources.memory_bytes"));
  }
  reg.mutable_resources()->set_memory_bytes(1 << 30);
  reg.add_kinds(v1::STAGE_UNSPECIFIED);
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->RegisterWorker(&ctx, reg, &resp);
    EXPECT_THAT(s.error_message(), HasSubstr("kinds[0]"));
  }
}

TEST_F(WorkerServiceTest, LeaseLongPollWakesWhenAJobArrives) {
  std::string w = Register();
  v1::LeaseTaskResponse resp;
  absl::Time start = absl::Now();
  ASSERT_TRUE(Lease(w, 300, &resp).ok());
  EXPECT_FALSE(resp.has_task());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290)) << "returned before the wait ended";

  absl::Duration waited;
  std::thread poller([&] {
    absl::Time t0 = absl::Now();
    ASSERT_TRUE(Lease(w, 10000, &resp).ok());
    waited = absl::Now() - t0;
  });
  absl::SleepFor(absl::Milliseconds(200));
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  poller.join();
  ASSERT_TRUE(resp.has_task());
  EXPECT_EQ(resp.task().job_id(), job.job_id());
  EXPECT_LT(waited, absl::Seconds(3)) << "the long poll did not wake on the submission";
}

TEST_F(WorkerServiceTest, LeaseRequestsAreChecked) {
  v1::LeaseTaskResponse resp;
  grpc::Status s = Lease("worker-unknown", 0, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("worker_id"));
  std::string w = Register();
  v1::LeaseTaskRequest r;
  r.set_worker_id(w);
  r.mutable_wait()->set_seconds(-1);
  grpc::ClientContext ctx;
  s = workers_->LeaseTask(&ctx, r, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("wait"));
}

TEST_F(WorkerServiceTest, AWorkerThatLostItsLeaseCannotCommit) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  std::string slow = Register(), fast = Register();
  v1::LeaseTaskResponse first;
  ASSERT_TRUE(Lease(slow, 1000, &first).ok());
  ASSERT_TRUE(first.has_task());
  // `slow` stalls past its lease; `fast` keeps polling and takes the task over.
  v1::LeaseTaskResponse second;
  ASSERT_TRUE(Lease(fast, 5000, &second).ok());
  ASSERT_TRUE(second.has_task());
  EXPECT_EQ(second.task().task_id(), first.task().task_id());
  EXPECT_EQ(second.task().attempt(), 2);
  EXPECT_GT(second.task().fencing_token(), first.task().fencing_token());

  v1::HeartbeatRequest hb;
  hb.set_lease_id(first.task().lease_id());
  hb.set_fencing_token(first.task().fencing_token());
  v1::HeartbeatResponse hb_resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(workers_->Heartbeat(&ctx, hb, &hb_resp).ok());
    EXPECT_EQ(hb_resp.action(), v1::HEARTBEAT_ACTION_LEASE_LOST);
  }
  v1::CompleteTaskRequest stale;
  stale.set_lease_id(first.task().lease_id());
  stale.set_fencing_token(first.task().fencing_token());
  stale.mutable_outputs()->set_output_path(first.task().output_path());
  v1::CompleteTaskResponse done;
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->CompleteTask(&ctx, stale, &done);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  }
  v1::CompleteTaskRequest good = stale;
  good.set_lease_id(second.task().lease_id());
  good.set_fencing_token(second.task().fencing_token());
  good.mutable_outputs()->set_output_path(second.task().output_path());
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->CompleteTask(&ctx, good, &done);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
}

TEST_F(WorkerServiceTest, RequestLimits) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  std::string w = Register();
  v1::LeaseTaskResponse leased;
  ASSERT_TRUE(Lease(w, 1000, &leased).ok());
  ASSERT_TRUE(leased.has_task());
  v1::HeartbeatRequest hb;
  hb.set_lease_id(leased.task().lease_id());
  hb.set_fencing_token(leased.task().fencing_token());
  for (int i = 0; i < 1001; ++i) hb.add_logs()->set_message("x");
  v1::HeartbeatResponse resp;
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->Heartbeat(&ctx, hb, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("logs"));
  }
  hb.clear_logs();
  hb.set_lease_id("");
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->Heartbeat(&ctx, hb, &resp);
    EXPECT_THAT(s.error_message(), HasSubstr("lease_id"));
  }
  v1::FailTaskRequest fail;
  fail.set_lease_id(leased.task().lease_id());
  fail.set_fencing_token(leased.task().fencing_token());
  fail.set_message(std::string(5000, 'm'));
  v1::FailTaskResponse fail_resp;
  {
    grpc::ClientContext ctx;
    grpc::Status s = workers_->FailTask(&ctx, fail, &fail_resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("message"));
  }
}

TEST_F(WorkerServiceTest, DeregisterHandsTheTaskOn) {
  v1::Job job;
  ASSERT_TRUE(Submit(ValidRequest(), &job).ok());
  std::string a = Register(), b = Register();
  v1::LeaseTaskResponse first, second;
  ASSERT_TRUE(Lease(a, 1000, &first).ok());
  ASSERT_TRUE(first.has_task());
  v1::DeregisterWorkerRequest bye;
  bye.set_worker_id(a);
  bye.set_reason("SIGTERM");
  v1::DeregisterWorkerResponse ok;
  grpc::ClientContext ctx;
  ASSERT_TRUE(workers_->DeregisterWorker(&ctx, bye, &ok).ok());
  ASSERT_TRUE(Lease(b, 1000, &second).ok());
  ASSERT_TRUE(second.has_task());
  EXPECT_EQ(second.task().task_id(), first.task().task_id());
  EXPECT_EQ(second.task().attempt(), 1);
}

}  // namespace
}  // namespace linearize::scheduler::testing
