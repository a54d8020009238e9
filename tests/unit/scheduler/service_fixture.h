// A scheduler served in-process on a loopback port (SQLite store in a
// temporary directory), with an artifact root holding a tiny teacher
// (tests/fixtures/models/llama's config.json: 2 layers, context 256) and a
// training text, and client stubs that call it as a tenant.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "linearize/v1/worker_service.grpc.pb.h"
#include "services/scheduler/scheduler_server.h"

namespace linearize::scheduler::testing {

namespace v1 = ::linearize::v1;
namespace fs = std::filesystem;

class SchedulerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/linearize-sched-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/artifacts";
    fs::create_directories(root_ + "/models/tiny");
    fs::copy_file(std::string(LINEARIZE_SOURCE_DIR) + "/tests/fixtures/models/llama/config.json",
                  root_ + "/models/tiny/config.json");
    fs::create_directories(root_ + "/data");
    std::ofstream(root_ + "/data/train.txt") << "Some training text.\n";
    options_.store_url = absl::StrCat("sqlite://", dir_, "/jobs.db");
    options_.artifact_root = root_;
    options_.store.retry_backoff = absl::ZeroDuration();
    options_.watch.poll_interval = absl::Milliseconds(50);
    options_.watch.progress_interval = absl::Milliseconds(100);
    options_.workers.poll_interval = absl::Milliseconds(100);
  }
  void TearDown() override {
    scheduler_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void StartScheduler() {
    absl::StatusOr<std::unique_ptr<Scheduler>> s = Scheduler::Start(options_);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", scheduler_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }

  // A client context for `tenant` ("" sends no tenant).
  static std::unique_ptr<grpc::ClientContext> As(const std::string& tenant) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!tenant.empty()) ctx->AddMetadata("x-linearize-tenant", tenant);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return ctx;
  }

  // A valid CPU-only LoLCATs conversion of the tiny teacher.
  static v1::SubmitConversionRequest ValidRequest() {
    v1::SubmitConversionRequest r;
    v1::ConversionSpec* spec = r.mutable_spec();
    spec->mutable_teacher()->set_artifact_path("models/tiny");
    spec->mutable_recipe()->set_kind(v1::RECIPE_KIND_LOLCATS);
    spec->mutable_data()->add_train()->set_path("data/train.txt");
    spec->mutable_budget()->set_cpu_only(true);
    r.set_display_name("tiny lolcats");
    return r;
  }

  grpc::Status Submit(const v1::SubmitConversionRequest& r, v1::Job* job,
                      const std::string& tenant = "acme") {
    return jobs_->SubmitConversion(As(tenant).get(), r, job);
  }

  std::string dir_, root_;
  SchedulerOptions options_;
  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

}  // namespace linearize::scheduler::testing
