// The fixture every job-store test runs under, once per backend: SQLite in
// a fresh temporary file, and PostgreSQL in a fresh schema of the test
// server (pg_test_server.h). A fake clock drives leases and backoff.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/scheduler/job_store.h"
#include "tests/unit/scheduler/pg_test_server.h"

namespace linearize::scheduler::testing {

namespace v1 = ::linearize::v1;

class FakeClock {
 public:
  absl::Time Now() const { return absl::FromUnixMicros(us_.load()); }
  void Advance(absl::Duration d) { us_ += absl::ToInt64Microseconds(d); }

 private:
  std::atomic<int64_t> us_{1'700'000'000'000'000};
};

// A job with the usual graph: attention transfer (in `blocks` blocks of 2
// layers, or one task when blocks is 0), fine-tuning, evaluation, publishing.
inline NewJob MakeJob(const std::string& tenant, const std::string& request_id = "",
                      int priority = 0, int blocks = 0, int gpus = 0) {
  static std::atomic<int> counter{0};
  NewJob j;
  const int n = ++counter;
  j.job.set_job_id(absl::StrCat("job-", getpid(), "-", n, "-", rand()));
  j.job.set_tenant(tenant);
  j.job.set_priority(priority);
  j.job.set_request_id(request_id);
  j.job.set_display_name(absl::StrCat("job ", n));
  v1::ConversionSpec* spec = j.job.mutable_spec();
  spec->mutable_teacher()->set_artifact_path("models/tiny");
  spec->mutable_recipe()->set_kind(v1::RECIPE_KIND_LOLCATS);
  spec->set_output_model_name(absl::StrCat("model-", j.job.job_id()));
  spec->mutable_budget()->mutable_max_wall_time()->set_seconds(86400);
  j.request = absl::StrCat("request of ", request_id.empty() ? j.job.job_id() : request_id);
  j.teacher_path = "models/tiny";
  if (blocks == 0) {
    j.tasks.push_back({v1::STAGE_ATTENTION_TRANSFER, std::nullopt, gpus, 0});
  } else {
    for (int b = 0; b < blocks; ++b) {
      v1::LayerBlock block;
      block.set_first_layer(2 * b);
      block.set_num_layers(2);
      j.tasks.push_back({v1::STAGE_ATTENTION_TRANSFER, block, gpus, 0});
    }
  }
  j.tasks.push_back({v1::STAGE_FINETUNE, std::nullopt, gpus, 0});
  j.tasks.push_back({v1::STAGE_EVALUATE, std::nullopt, 0, 0});
  j.tasks.push_back({v1::STAGE_PUBLISH, std::nullopt, 0, 0});
  return j;
}

inline v1::RegisterWorkerRequest CpuWorker(const std::string& request_id = "") {
  v1::RegisterWorkerRequest r;
  r.set_hostname("test-host");
  r.mutable_resources()->set_cpu_cores(2);
  r.mutable_resources()->set_memory_bytes(int64_t{8} << 30);
  r.set_request_id(request_id);
  return r;
}

inline v1::LeaseTaskRequest LeaseFor(const std::string& worker_id, int free_gpus = 0) {
  v1::LeaseTaskRequest r;
  r.set_worker_id(worker_id);
  r.set_free_gpus(free_gpus);
  return r;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    options_.clock = [this] { return clock_.Now(); };
    options_.retry_backoff = absl::ZeroDuration();
    // Workers lapse only in the tests about lapsing.
    options_.heartbeat_interval = absl::Hours(1);
    if (GetParam() == "postgresql") {
      absl::StatusOr<std::string> url = NewPgSchemaUrl();
      ASSERT_TRUE(url.ok()) << "the PostgreSQL half of the store suite needs a server: "
                            << url.status();
      url_ = *url;
    } else {
      char tmpl[] = "/tmp/linearize-store-XXXXXX";
      ASSERT_NE(mkdtemp(tmpl), nullptr);
      dir_ = tmpl;
      url_ = absl::StrCat("sqlite://", dir_, "/jobs.db");
    }
  }
  void TearDown() override {
    store_.reset();
    if (GetParam() == "postgresql") {
      if (!url_.empty()) DropPgSchema(url_);
    } else if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // Opens (or reopens, after changing options_) the store.
  JobStore& Store() {
    if (!store_) {
      absl::StatusOr<std::unique_ptr<JobStore>> s = OpenJobStore(url_, options_);
      EXPECT_TRUE(s.ok()) << s.status();
      if (!s.ok()) std::abort();
      store_ = std::move(*s);
    }
    return *store_;
  }
  void Reopen() { store_.reset(); }

  v1::Job Create(NewJob j) {
    absl::StatusOr<CreateJobResult> r = Store().CreateJob(j);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->job : v1::Job();
  }
  std::string Register(const v1::RegisterWorkerRequest& r = CpuWorker()) {
    absl::StatusOr<WorkerRegistration> w = Store().RegisterWorker(r);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? w->worker_id : "";
  }
  std::optional<v1::Task> Lease(const std::string& worker_id, int free_gpus = 0) {
    absl::StatusOr<std::optional<v1::Task>> t = Store().LeaseTask(LeaseFor(worker_id, free_gpus));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : std::nullopt;
  }
  absl::Status Complete(const v1::Task& t, const std::string& sub = "out") {
    v1::CompleteTaskRequest r;
    r.set_lease_id(t.lease_id());
    r.set_fencing_token(t.fencing_token());
    r.mutable_outputs()->set_output_path(absl::StrCat(t.output_path(), "/", sub));
    if (t.kind() == v1::STAGE_EVALUATE) {
      r.mutable_outputs()->set_evaluation_report_id(t.evaluation_report_id());
    }
    if (t.kind() == v1::STAGE_PUBLISH) {
      r.mutable_outputs()->set_artifact_path(absl::StrCat(t.output_path(), "/model"));
    }
    return Store().CompleteTask(r);
  }
  v1::HeartbeatResponse Beat(const v1::Task& t, const std::string& checkpoint = "",
                             int64_t step = 0) {
    v1::HeartbeatRequest r;
    r.set_lease_id(t.lease_id());
    r.set_fencing_token(t.fencing_token());
    r.set_checkpoint_path(checkpoint);
    if (step > 0) {
      r.mutable_progress()->set_step(step);
      r.mutable_progress()->set_total_steps(100);
      r.mutable_progress()->set_loss(1.0 / step);
    }
    absl::StatusOr<v1::HeartbeatResponse> resp = Store().Heartbeat(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : v1::HeartbeatResponse();
  }
  v1::Job Get(const v1::Job& j) {
    absl::StatusOr<v1::Job> g = Store().GetJob(j.tenant(), j.job_id());
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : v1::Job();
  }

  FakeClock clock_;
  JobStoreOptions options_;
  std::string url_, dir_;
  std::unique_ptr<JobStore> store_;
};

inline std::string BackendName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

}  // namespace linearize::scheduler::testing

// Runs every TEST_P of `suite` against both backends.
#define LINEARIZE_STORE_BACKENDS(suite)                                            \
  INSTANTIATE_TEST_SUITE_P(Backends, suite,                                        \
                           ::testing::Values(std::string("sqlite"),                \
                                             std::string("postgresql")),           \
                           ::linearize::scheduler::testing::BackendName)
