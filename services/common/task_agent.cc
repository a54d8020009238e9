#include "services/common/task_agent.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "services/common/log.h"
#include "services/common/status.h"

namespace linearize::server {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d, absl::Duration fallback) {
  const absl::Duration v = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  return v > absl::ZeroDuration() ? v : fallback;
}

void ToProto(absl::Duration v, google::protobuf::Duration* d) {
  const int64_t ns = absl::ToInt64Nanoseconds(v);
  d->set_seconds(ns / 1000000000);
  d->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void SetNow(google::protobuf::Timestamp* t) {
  const int64_t ns = absl::ToUnixNanos(absl::Now());
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

bool Transient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s);
}

// One request id per process start (worker_service.proto: RegisterWorker).
std::string NewRequestId(const std::string& hostname) {
  std::random_device rd;
  std::string host;
  for (char c : hostname.substr(0, 64)) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    host.push_back(ok ? c : '-');
  }
  return absl::StrCat("reg-", host.empty() ? "host" : host, "-", ::getpid(), "-",
                      absl::Hex(static_cast<uint64_t>(rd()) << 32 | rd(), absl::kZeroPad16));
}

}  // namespace

double ProcessCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

int64_t ProcessPeakResidentBytes() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

// ---- TaskAgent ----

absl::StatusOr<std::unique_ptr<TaskAgent>> TaskAgent::Create(TaskAgentOptions options) {
  if (options.registration.request_id().empty()) {
    options.registration.set_request_id(NewRequestId(options.registration.hostname()));
  }
  auto channel = CreateChannel(options.scheduler);
  if (!channel.ok()) {
    return absl::Status(channel.status().code(),
                        absl::StrCat("--scheduler: ", channel.status().message()));
  }
  std::unique_ptr<TaskAgent> agent(new TaskAgent(std::move(options)));
  agent->channel_ = *channel;
  agent->stub_ = v1::WorkerService::NewStub(agent->channel_);
  return agent;
}

void TaskAgent::Prepare(grpc::ClientContext* context, absl::Duration timeout) const {
  AttachBearerToken(context, options_.token);
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::Status TaskAgent::Register() {
  absl::Duration backoff = absl::Milliseconds(200);
  for (;;) {
    if (stopped()) return absl::CancelledError("stopping before registration");
    grpc::ClientContext context;
    Prepare(&context, options_.rpc_timeout);
    v1::RegisterWorkerResponse response;
    const absl::Status s =
        FromGrpcStatus(stub_->RegisterWorker(&context, options_.registration, &response));
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      worker_id_ = response.worker_id();
      heartbeat_interval_ = FromProto(response.heartbeat_interval(), absl::Seconds(10));
      lease_duration_ = FromProto(response.lease_duration(), absl::Seconds(60));
      max_lease_wait_ = FromProto(response.max_lease_wait(), absl::Seconds(60));
      LogInfo("worker.registered",
              {{"worker_id", worker_id_},
               {"heartbeat_s", absl::ToDoubleSeconds(heartbeat_interval_)},
               {"lease_s", absl::ToDoubleSeconds(lease_duration_)}});
      return absl::OkStatus();
    }
    if (!Transient(s)) return s;
    LogWarning("worker.register_retry", {{"status", s}, {"backoff_s", absl::ToDoubleSeconds(backoff)}});
    std::unique_lock<std::mutex> lock(mu_);
    stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(backoff), [&] { return stopped(); });
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

absl::StatusOr<std::optional<v1::Task>> TaskAgent::Lease() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (stopped()) return std::nullopt;
    v1::LeaseTaskRequest request;
    absl::Duration wait;
    {
      std::lock_guard<std::mutex> lock(mu_);
      request.set_worker_id(worker_id_);
      wait = std::min(options_.lease_wait, max_lease_wait_);
    }
    ToProto(wait, request.mutable_wait());
    grpc::ClientContext context;
    Prepare(&context, wait + options_.rpc_timeout);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped()) return std::nullopt;
      pending_lease_ = &context;
    }
    v1::LeaseTaskResponse response;
    const grpc::Status g = stub_->LeaseTask(&context, request, &response);
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_lease_ = nullptr;
    }
    if (stopped()) {
      // A task leased in the same instant is handed back by Deregister.
      return std::nullopt;
    }
    const absl::Status s = FromGrpcStatus(g);
    if (s.ok()) {
      if (!response.has_task()) return std::nullopt;
      return std::optional<v1::Task>(std::move(*response.mutable_task()));
    }
    if (!absl::IsNotFound(s) || attempt > 0) return s;
    // The scheduler let this worker lapse (or forgot it): register again.
    LogWarning("worker.lapsed", {{"status", s}});
    if (absl::Status r = Register(); !r.ok()) return r;
  }
  return std::nullopt;
}

absl::StatusOr<v1::HeartbeatResponse> TaskAgent::Heartbeat(const v1::HeartbeatRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, options_.rpc_timeout);
  v1::HeartbeatResponse response;
  const absl::Status s = FromGrpcStatus(stub_->Heartbeat(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::Status TaskAgent::Complete(const v1::CompleteTaskRequest& request) {
  absl::Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(200) * (1 << attempt));
    grpc::ClientContext context;
    Prepare(&context, options_.rpc_timeout);
    v1::CompleteTaskResponse response;
    s = FromGrpcStatus(stub_->CompleteTask(&context, request, &response));
    if (!Transient(s)) return s;
  }
  return s;
}

absl::StatusOr<v1::FailTaskResponse> TaskAgent::Fail(const v1::FailTaskRequest& request) {
  absl::Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(200) * (1 << attempt));
    grpc::ClientContext context;
    Prepare(&context, options_.rpc_timeout);
    v1::FailTaskResponse response;
    s = FromGrpcStatus(stub_->FailTask(&context, request, &response));
    if (s.ok()) return response;
    if (!Transient(s)) return s;
  }
  return s;
}

absl::Status TaskAgent::Deregister(std::string_view reason) {
  v1::DeregisterWorkerRequest request;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (worker_id_.empty()) return absl::OkStatus();
    request.set_worker_id(worker_id_);
  }
  request.set_reason(std::string(reason));
  grpc::ClientContext context;
  Prepare(&context, absl::Seconds(10));
  v1::DeregisterWorkerResponse response;
  return FromGrpcStatus(stub_->DeregisterWorker(&context, request, &response));
}

void TaskAgent::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  if (pending_lease_ != nullptr) pending_lease_->TryCancel();
  stop_cv_.notify_all();
}

std::string TaskAgent::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

absl::Duration TaskAgent::heartbeat_interval() const {
  std::lock_guard<std::mutex> lock(mu_);
  return heartbeat_interval_;
}

absl::Duration TaskAgent::lease_duration() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lease_duration_;
}

// ---- LeaseKeeper ----

LeaseKeeper::LeaseKeeper(TaskAgent& agent, v1::Task task)
    : agent_(agent), task_(std::move(task)), start_(absl::Now()), cpu_start_(ProcessCpuSeconds()) {
  thread_ = std::thread([this] { Loop(); });
}

LeaseKeeper::~LeaseKeeper() { StopHeartbeats(); }

void LeaseKeeper::StopHeartbeats() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseKeeper::SetProgress(const v1::StageProgress& progress) {
  std::lock_guard<std::mutex> lock(mu_);
  progress_ = progress;
  progress_.set_stage(task_.kind());
  SetNow(progress_.mutable_update_time());
  has_progress_ = true;
}

v1::StageProgress LeaseKeeper::progress() const {
  std::lock_guard<std::mutex> lock(mu_);
  return progress_;
}

void LeaseKeeper::SetCheckpoint(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  checkpoint_ = path;
}

std::string LeaseKeeper::checkpoint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpoint_;
}

void LeaseKeeper::SetTokensProcessed(int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  tokens_ = tokens;
}

void LeaseKeeper::Log(v1::LogSeverity severity, const std::string& message,
                      const std::map<std::string, std::string>& fields) {
  v1::LogLine line;
  SetNow(line.mutable_time());
  line.set_severity(severity);
  line.set_stage(task_.kind());
  line.set_message(message.size() > 4096 ? message.substr(0, 4093) + "..." : message);
  for (const auto& [k, v] : fields) {
    if (line.fields_size() >= 32) break;
    (*line.mutable_fields())[k] = v;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (logs_.size() >= 1000) logs_.erase(logs_.begin());
  logs_.push_back(std::move(line));
}

v1::HeartbeatAction LeaseKeeper::verdict() const {
  std::lock_guard<std::mutex> lock(mu_);
  return verdict_;
}

v1::ResourceUsage LeaseKeeper::Usage() const {
  v1::ResourceUsage u;
  u.set_cpu_seconds(std::max(0.0, ProcessCpuSeconds() - cpu_start_));
  ToProto(absl::Now() - start_, u.mutable_wall_time());
  u.set_peak_host_memory_bytes(ProcessPeakResidentBytes());
  std::lock_guard<std::mutex> lock(mu_);
  u.set_tokens_processed(tokens_);
  return u;
}

v1::HeartbeatRequest LeaseKeeper::BuildHeartbeat(std::vector<v1::LogLine>* logs_taken) {
  v1::HeartbeatRequest request;
  request.set_lease_id(task_.lease_id());
  request.set_fencing_token(task_.fencing_token());
  *request.mutable_usage() = Usage();
  std::lock_guard<std::mutex> lock(mu_);
  if (has_progress_) *request.mutable_progress() = progress_;
  request.set_checkpoint_path(checkpoint_);
  logs_taken->swap(logs_);
  for (const v1::LogLine& l : *logs_taken) *request.add_logs() = l;
  return request;
}

v1::HeartbeatAction LeaseKeeper::Flush() {
  std::lock_guard<std::mutex> send(send_mu_);
  if (verdict() != v1::HEARTBEAT_ACTION_UNSPECIFIED) return verdict();
  std::vector<v1::LogLine> taken;
  const v1::HeartbeatRequest request = BuildHeartbeat(&taken);
  absl::StatusOr<v1::HeartbeatResponse> r = agent_.Heartbeat(request);
  if (!r.ok()) {
    // Keep the lines for the next try (newest kept when over the cap).
    std::lock_guard<std::mutex> lock(mu_);
    taken.insert(taken.end(), logs_.begin(), logs_.end());
    if (taken.size() > 1000) taken.erase(taken.begin(), taken.end() - 1000);
    logs_.swap(taken);
    LogWarning("lease.heartbeat_failed", {{"task_id", task_.task_id()}, {"status", r.status()}});
    return v1::HEARTBEAT_ACTION_UNSPECIFIED;
  }
  const v1::HeartbeatAction action = r->action();
  if (action == v1::HEARTBEAT_ACTION_CANCEL || action == v1::HEARTBEAT_ACTION_LEASE_LOST) {
    std::lock_guard<std::mutex> lock(mu_);
    verdict_ = action;
    LogWarning("lease.ended_by_scheduler",
               {{"task_id", task_.task_id()}, {"action", v1::HeartbeatAction_Name(action)}});
  }
  return action;
}

void LeaseKeeper::Loop() {
  const absl::Duration interval = agent_.heartbeat_interval();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(interval), [&] { return stop_; });
    if (stop_ || verdict_ != v1::HEARTBEAT_ACTION_UNSPECIFIED) return;
    lock.unlock();
    Flush();
    lock.lock();
  }
}

absl::Status LeaseKeeper::Complete(v1::TaskOutputs outputs) {
  StopHeartbeats();
  Flush();  // the last progress and log lines; may also learn the lease is gone
  if (should_stop()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task_.task_id(), ": not completed, the scheduler said ",
        v1::HeartbeatAction_Name(verdict())));
  }
  v1::CompleteTaskRequest request;
  request.set_lease_id(task_.lease_id());
  request.set_fencing_token(task_.fencing_token());
  *request.mutable_outputs() = std::move(outputs);
  *request.mutable_usage() = Usage();
  return agent_.Complete(request);
}

absl::StatusOr<v1::FailTaskResponse> LeaseKeeper::Fail(v1::FailureCode code,
                                                       const std::string& message,
                                                       bool retryable) {
  StopHeartbeats();
  Flush();
  if (should_stop()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task_.task_id(), ": failure not reported, the scheduler said ",
        v1::HeartbeatAction_Name(verdict())));
  }
  v1::FailTaskRequest request;
  request.set_lease_id(task_.lease_id());
  request.set_fencing_token(task_.fencing_token());
  request.set_code(code);
  request.set_message(message.size() > 4096 ? message.substr(0, 4093) + "..." : message);
  request.set_retryable(retryable);
  request.set_checkpoint_path(checkpoint());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (has_progress_) *request.mutable_progress() = progress_;
  }
  *request.mutable_usage() = Usage();
  return agent_.Fail(request);
}

}  // namespace linearize::server
