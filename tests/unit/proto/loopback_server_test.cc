// The generated stubs link and work: an in-process grpc::Server on a loopback
// port serves one RPC of each service with a tiny test implementation, and
// the generated client stubs call it. Covers unary (sync API), server
// streaming (callback API reactor) and bidi streaming (callback API reactor),
// plus status codes crossing the wire.

#include <cctype>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "linearize/v1/evaluation_service.grpc.pb.h"
#include "linearize/v1/inference_service.grpc.pb.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "linearize/v1/worker_service.grpc.pb.h"

namespace {

namespace v1 = linearize::v1;
using google::protobuf::util::TimeUtil;

// JobService.GetJob: knows one job.
class TestJobService final : public v1::JobService::Service {
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* req,
                      v1::Job* job) override {
    if (req->job_id() != "job-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job_id: no job \"" + req->job_id() + "\"");
    }
    job->set_job_id("job-1");
    job->set_state(v1::JOB_STATE_RUNNING);
    job->set_stage(v1::STAGE_FINETUNE);
    return grpc::Status::OK;
  }
};

// WorkerService.Heartbeat: fencing tokens below 5 are stale.
class TestWorkerService final : public v1::WorkerService::Service {
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    if (req->lease_id().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id: required");
    }
    if (req->fencing_token() < 5) {
      resp->set_action(v1::HEARTBEAT_ACTION_LEASE_LOST);
      return grpc::Status::OK;
    }
    resp->set_action(v1::HEARTBEAT_ACTION_CONTINUE);
    *resp->mutable_lease_deadline() = TimeUtil::SecondsToTimestamp(1'700'000'060);
    return grpc::Status::OK;
  }
};

// EvaluationService.Evaluate: started, one progress per task, report.
class EvaluateReactor final : public grpc::ServerWriteReactor<v1::EvaluationEvent> {
 public:
  explicit EvaluateReactor(const v1::EvaluateRequest& req) {
    if (req.tasks().empty()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "tasks: at least one required"));
      return;
    }
    v1::EvaluationEvent started;
    started.mutable_started()->set_report_id("rep-1");
    for (const auto& t : req.tasks()) started.mutable_started()->add_task_names(t.name());
    events_.push_back(started);
    for (int i = 0; i < req.tasks_size(); ++i) {
      v1::EvaluationEvent progress;
      progress.mutable_progress()->set_task_name(req.tasks(i).name());
      progress.mutable_progress()->set_task_index(i);
      progress.mutable_progress()->set_items_done(1);
      progress.mutable_progress()->set_items_total(1);
      events_.push_back(progress);
    }
    v1::EvaluationEvent report;
    report.mutable_report()->set_report_id("rep-1");
    report.mutable_report()->set_state(v1::EVALUATION_STATE_SUCCEEDED);
    events_.push_back(report);
    StartWrite(&events_[0]);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (++next_ < events_.size()) {
      StartWrite(&events_[next_]);
    } else {
      Finish(grpc::Status::OK);
    }
  }

  void OnDone() override { delete this; }

 private:
  std::vector<v1::EvaluationEvent> events_;
  size_t next_ = 0;
};

class TestEvaluationService final : public v1::EvaluationService::CallbackService {
  grpc::ServerWriteReactor<v1::EvaluationEvent>* Evaluate(
      grpc::CallbackServerContext*, const v1::EvaluateRequest* req) override {
    return new EvaluateReactor(*req);
  }
};

// InferenceService.Chat: `start` answers `started`; each `input` text comes
// back upper-cased as one delta followed by an end marker. One operation is
// outstanding at a time (read, or the writes for one message), so the
// reactor needs no lock.
class ChatReactor final : public grpc::ServerBidiReactor<v1::ChatRequest, v1::ChatResponse> {
 public:
  ChatReactor() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The client half-closed: every turn has been answered.
      Finish(grpc::Status::OK);
      return;
    }
    if (!started_ && !request_.has_start()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "first ChatRequest must be `start`"));
      return;
    }
    pending_.clear();
    next_ = 0;
    if (request_.has_start()) {
      started_ = true;
      v1::ChatResponse r;
      r.mutable_started()->set_session_id(request_.start().session_id());
      r.mutable_started()->set_state(v1::SESSION_STATE_ACTIVE);
      pending_.push_back(r);
    } else if (request_.has_input()) {
      ++turn_;
      std::string text = request_.input().text();
      for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      v1::ChatResponse delta;
      delta.set_turn(turn_);
      delta.mutable_delta()->set_text(text);
      delta.mutable_delta()->add_token_ids(static_cast<int32_t>(text.size()));
      pending_.push_back(delta);
      v1::ChatResponse end;
      end.set_turn(turn_);
      end.mutable_end()->set_finish_reason(v1::FINISH_REASON_STOP);
      end.mutable_end()->mutable_usage()->set_completion_tokens(1);
      pending_.push_back(end);
    }
    WriteNextOrRead();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    ++next_;
    WriteNextOrRead();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNextOrRead() {
    if (next_ < pending_.size()) {
      StartWrite(&pending_[next_]);
    } else {
      StartRead(&request_);
    }
  }

  v1::ChatRequest request_;
  std::vector<v1::ChatResponse> pending_;
  size_t next_ = 0;
  bool started_ = false;
  int32_t turn_ = 0;
};

class TestInferenceService final : public v1::InferenceService::CallbackService {
  grpc::ServerBidiReactor<v1::ChatRequest, v1::ChatResponse>* Chat(
      grpc::CallbackServerContext*) override {
    return new ChatReactor();
  }
};

class LoopbackServer : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&jobs_);
    builder.RegisterService(&workers_);
    builder.RegisterService(&evaluation_);
    builder.RegisterService(&inference_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }

  TestJobService jobs_;
  TestWorkerService workers_;
  TestEvaluationService evaluation_;
  TestInferenceService inference_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(LoopbackServer, JobServiceGetJob) {
  auto stub = v1::JobService::NewStub(channel_);
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetJobRequest req;
    req.set_job_id("job-1");
    v1::Job job;
    grpc::Status status = stub->GetJob(&ctx, req, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(job.job_id(), "job-1");
    EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
    EXPECT_EQ(job.stage(), v1::STAGE_FINETUNE);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetJobRequest req;
    req.set_job_id("job-2");
    v1::Job job;
    grpc::Status status = stub->GetJob(&ctx, req, &job);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(status.error_message(), "job_id: no job \"job-2\"");
  }
  {
    // A method the test server does not implement answers UNIMPLEMENTED.
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::CancelJobRequest req;
    v1::Job job;
    EXPECT_EQ(stub->CancelJob(&ctx, req, &job).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
}

TEST_F(LoopbackServer, WorkerServiceHeartbeat) {
  auto stub = v1::WorkerService::NewStub(channel_);
  auto beat = [&](const std::string& lease, int64_t token, v1::HeartbeatResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::HeartbeatRequest req;
    req.set_lease_id(lease);
    req.set_fencing_token(token);
    return stub->Heartbeat(&ctx, req, resp);
  };
  v1::HeartbeatResponse resp;
  ASSERT_TRUE(beat("lease-1", 7, &resp).ok());
  EXPECT_EQ(resp.action(), v1::HEARTBEAT_ACTION_CONTINUE);
  EXPECT_EQ(resp.lease_deadline().seconds(), 1'700'000'060);
  resp.Clear();
  ASSERT_TRUE(beat("lease-1", 3, &resp).ok());
  EXPECT_EQ(resp.action(), v1::HEARTBEAT_ACTION_LEASE_LOST);
  EXPECT_FALSE(resp.has_lease_deadline());
  EXPECT_EQ(beat("", 7, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(LoopbackServer, EvaluationServiceEvaluateStreams) {
  auto stub = v1::EvaluationService::NewStub(channel_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::EvaluateRequest req;
  req.mutable_model()->set_model_name("smollm2-135m-instruct");
  req.add_tasks()->set_name("perplexity");
  req.add_tasks()->set_name("recall");
  req.set_request_id("eval-1");
  std::unique_ptr<grpc::ClientReader<v1::EvaluationEvent>> reader = stub->Evaluate(&ctx, req);
  std::vector<v1::EvaluationEvent> events;
  v1::EvaluationEvent event;
  while (reader->Read(&event)) events.push_back(event);
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].event_case(), v1::EvaluationEvent::kStarted);
  EXPECT_EQ(events[0].started().task_names_size(), 2);
  EXPECT_EQ(events[1].progress().task_name(), "perplexity");
  EXPECT_EQ(events[2].progress().task_index(), 1);
  EXPECT_EQ(events[3].report().state(), v1::EVALUATION_STATE_SUCCEEDED);

  grpc::ClientContext bad_ctx;
  SetDeadline(&bad_ctx);
  auto bad = stub->Evaluate(&bad_ctx, v1::EvaluateRequest());
  EXPECT_FALSE(bad->Read(&event));
  EXPECT_EQ(bad->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(LoopbackServer, InferenceServiceChatIsBidirectional) {
  auto stub = v1::InferenceService::NewStub(channel_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto stream = stub->Chat(&ctx);
  v1::ChatRequest start;
  start.mutable_start()->set_session_id("sess-1");
  ASSERT_TRUE(stream->Write(start));
  v1::ChatResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.event_case(), v1::ChatResponse::kStarted);
  EXPECT_EQ(resp.started().session_id(), "sess-1");
  EXPECT_EQ(resp.turn(), 0);

  for (int turn = 1; turn <= 2; ++turn) {
    v1::ChatRequest input;
    input.mutable_input()->set_text(turn == 1 ? "hello" : "again");
    ASSERT_TRUE(stream->Write(input));
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_EQ(resp.event_case(), v1::ChatResponse::kDelta);
    EXPECT_EQ(resp.turn(), turn);
    EXPECT_EQ(resp.delta().text(), turn == 1 ? "HELLO" : "AGAIN");
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_EQ(resp.event_case(), v1::ChatResponse::kEnd);
    EXPECT_EQ(resp.turn(), turn);
    EXPECT_EQ(resp.end().finish_reason(), v1::FINISH_REASON_STOP);
  }
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(LoopbackServer, InferenceServiceChatRejectsInputBeforeStart) {
  auto stub = v1::InferenceService::NewStub(channel_);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto stream = stub->Chat(&ctx);
  v1::ChatRequest input;
  input.mutable_input()->set_text("hello");
  stream->Write(input);
  v1::ChatResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
