#include "services/scheduler/job_watch.h"

#include <deque>
#include <map>

#include "absl/strings/str_cat.h"
#include "services/common/auth.h"
#include "services/common/status.h"
#include "services/scheduler/field_checks.h"
#include "services/scheduler/sql_job_store.h"

namespace linearize::scheduler {
namespace {

using server::ToGrpcStatus;

// A stream that only reports an error.
class FailedStream final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  explicit FailedStream(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

bool IsTerminalEvent(const v1::JobEvent& e) {
  return e.has_state_change() && IsTerminal(e.state_change().state());
}

// Progress of one task is identified by its stage and layer block.
std::pair<int, int> ProgressKey(const v1::StageProgress& p) {
  return {p.stage(), p.has_layer_block() ? p.layer_block().first_layer() : -1};
}

}  // namespace

// One WatchJob stream. gRPC never runs its reactions inline with
// StartWrite/Finish, so calling those under mu_ is safe.
class WatchStream final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  struct Cursor {
    std::string job_id;
    int64_t events = 0, logs = 0;
    bool include_logs = false;
    v1::LogSeverity min_severity = v1::LOG_SEVERITY_UNSPECIFIED;
    bool wants_more = true;
  };

  WatchStream(std::shared_ptr<JobWatcher::Slot> slot, const v1::WatchJobRequest& request,
              const JobSnapshot& snap, const JobWatcherOptions& options)
      : slot_(std::move(slot)), options_(options) {
    cursor_.job_id = request.job_id();
    cursor_.events = snap.event_cursor;
    cursor_.logs = snap.log_cursor;
    cursor_.include_logs = request.include_logs();
    cursor_.min_severity = request.min_log_severity();
    sequence_ = snap.sequence;
    v1::JobEvent first;
    SetTimestamp(first.mutable_time(), absl::Now());
    first.set_sequence(snap.sequence);
    *first.mutable_snapshot() = snap.job;
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(first));
    if (IsTerminal(snap.job.state())) terminal_ = true;
    PumpLocked();
  }

  Cursor cursor() {
    absl::MutexLock lock(&mu_);
    Cursor c = cursor_;
    c.wants_more = !terminal_ && !finished_;
    return c;
  }

  // New entries from the store (in order), then held-back progress.
  void Deliver(std::vector<StoredEvent> events, std::vector<StoredLogLine> logs, absl::Time now) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    std::optional<v1::JobEvent> terminal_event;
    for (StoredEvent& e : events) {
      cursor_.events = e.cursor;
      if (terminal_ || terminal_event) continue;
      if (IsTerminalEvent(e.event)) {
        // Sent last, after this round's log lines.
        terminal_event = std::move(e.event);
        continue;
      }
      if (e.event.has_state_change() || e.event.has_stage_change()) sequence_ = e.event.sequence();
      if (e.event.has_progress()) {
        OfferProgressLocked(std::move(e.event), now);
      } else {
        queue_.push_back(std::move(e.event));
      }
    }
    for (StoredLogLine& l : logs) {
      cursor_.logs = l.cursor;
      if (terminal_) continue;
      if (logs_queued_ >= options_.log_buffer) {
        ++dropped_logs_;
        continue;
      }
      ReportDroppedLocked(now);
      v1::JobEvent e;
      *e.mutable_time() = l.line.time();
      e.set_sequence(sequence_);
      *e.mutable_log() = std::move(l.line);
      queue_.push_back(std::move(e));
      ++logs_queued_;
    }
    // Drops are reported as soon as the buffer has room again, and always
    // before the stream ends.
    if (logs_queued_ < options_.log_buffer || terminal_event) ReportDroppedLocked(now);
    if (terminal_event) {
      // Progress still held back is moot once the job has ended.
      held_progress_.clear();
      sequence_ = terminal_event->sequence();
      queue_.push_back(std::move(*terminal_event));
      terminal_ = true;
    }
    for (auto it = held_progress_.begin(); it != held_progress_.end();) {
      if (now - last_progress_[it->first] >= options_.progress_interval) {
        v1::JobEvent e = std::move(it->second);
        it = held_progress_.erase(it);
        OfferProgressLocked(std::move(e), now);
      } else {
        ++it;
      }
    }
    PumpLocked();
  }

  void EndWith(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override;

 private:
  // Sends progress now or holds it until its interval has passed; an unsent
  // progress of the same task in the queue is replaced (coalescing).
  void OfferProgressLocked(v1::JobEvent e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto key = ProgressKey(e.progress());
    e.set_sequence(sequence_);
    for (v1::JobEvent& queued : queue_) {
      if (queued.has_progress() && ProgressKey(queued.progress()) == key) {
        queued = std::move(e);
        return;
      }
    }
    auto last = last_progress_.find(key);
    if (last != last_progress_.end() && now - last->second < options_.progress_interval) {
      held_progress_[key] = std::move(e);
      return;
    }
    last_progress_[key] = now;
    queue_.push_back(std::move(e));
  }

  void ReportDroppedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (dropped_logs_ == 0) return;
    v1::JobEvent gap;
    SetTimestamp(gap.mutable_time(), now);
    gap.set_sequence(sequence_);
    gap.mutable_log_gap()->set_dropped_lines(dropped_logs_);
    queue_.push_back(std::move(gap));
    dropped_logs_ = 0;
  }

  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    if (queue_.empty()) {
      if (terminal_) FinishLocked(grpc::Status::OK);
      return;
    }
    current_ = std::move(queue_.front());
    queue_.pop_front();
    if (current_.has_log()) --logs_queued_;
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  std::shared_ptr<JobWatcher::Slot> slot_;
  const JobWatcherOptions options_;
  absl::Mutex mu_;
  Cursor cursor_ ABSL_GUARDED_BY(mu_);
  int64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::JobEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::JobEvent current_ ABSL_GUARDED_BY(mu_);  // being written
  std::map<std::pair<int, int>, v1::JobEvent> held_progress_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int, int>, absl::Time> last_progress_ ABSL_GUARDED_BY(mu_);
  size_t logs_queued_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_logs_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool terminal_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// The hub's handle on a stream; `stream` is cleared by the stream's OnDone,
// which waits for any delivery in progress.
struct JobWatcher::Slot {
  absl::Mutex mu;
  WatchStream* stream ABSL_GUARDED_BY(mu) = nullptr;
};

void WatchStream::OnDone() {
  {
    absl::MutexLock lock(&slot_->mu);
    slot_->stream = nullptr;
  }
  delete this;
}

JobWatcher::JobWatcher(JobStore* store, Notifier* changes, JobWatcherOptions options)
    : store_(store), changes_(changes), options_(options), thread_([this] { Loop(); }) {}

JobWatcher::~JobWatcher() {
  Shutdown();
  if (thread_.joinable()) thread_.join();
}

grpc::ServerWriteReactor<v1::JobEvent>* JobWatcher::Watch(grpc::CallbackServerContext* context,
                                                          const v1::WatchJobRequest* request) {
  absl::StatusOr<server::Principal> caller = server::PrincipalOf(context);
  if (!caller.ok()) return new FailedStream(caller.status());
  if (absl::Status s = CheckId(request->job_id(), "job_id"); !s.ok()) return new FailedStream(s);
  if (!v1::LogSeverity_IsValid(request->min_log_severity())) {
    return new FailedStream(absl::InvalidArgumentError(
        absl::StrCat("min_log_severity: unknown severity ", request->min_log_severity())));
  }
  absl::StatusOr<JobSnapshot> snap = store_->SnapshotJob(caller->tenant, request->job_id());
  if (!snap.ok()) return new FailedStream(snap.status());
  auto slot = std::make_shared<Slot>();
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    return new FailedStream(absl::UnavailableError("the scheduler is shutting down; retry"));
  }
  auto* stream = new WatchStream(slot, *request, *snap, options_);
  {
    absl::MutexLock slot_lock(&slot->mu);
    slot->stream = stream;
  }
  slots_.push_back(std::move(slot));
  return stream;
}

void JobWatcher::Shutdown() {
  std::vector<std::shared_ptr<Slot>> slots;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    slots = slots_;
  }
  changes_->Notify();  // wake the poller so it sees stopping_
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->stream != nullptr) {
      slot->stream->EndWith(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                         "the scheduler is shutting down; call WatchJob again"));
    }
  }
}

int JobWatcher::active_streams() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& slot : slots_) {
    absl::MutexLock slot_lock(&slot->mu);
    n += slot->stream != nullptr;
  }
  return n;
}

void JobWatcher::Loop() {
  for (;;) {
    const uint64_t generation = changes_->generation();
    std::vector<std::shared_ptr<Slot>> slots;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      // Drop slots whose stream has ended.
      std::vector<std::shared_ptr<Slot>> live;
      for (auto& slot : slots_) {
        absl::MutexLock slot_lock(&slot->mu);
        if (slot->stream != nullptr) live.push_back(slot);
      }
      slots_ = live;
      slots = std::move(live);
    }
    for (const auto& slot : slots) {
      WatchStream::Cursor cursor;
      {
        absl::MutexLock lock(&slot->mu);
        if (slot->stream == nullptr) continue;
        cursor = slot->stream->cursor();
      }
      std::vector<StoredEvent> events;
      std::vector<StoredLogLine> logs;
      if (cursor.wants_more) {
        // Store errors (a database restarting, say) are retried next round.
        absl::StatusOr<std::vector<StoredEvent>> e =
            store_->ReadJobEvents(cursor.job_id, cursor.events, 1000);
        if (e.ok()) events = std::move(*e);
        if (cursor.include_logs) {
          absl::StatusOr<std::vector<StoredLogLine>> l = store_->ReadJobLogs(
              cursor.job_id, cursor.logs, cursor.min_severity, 2000);
          if (l.ok()) logs = std::move(*l);
        }
      }
      absl::MutexLock lock(&slot->mu);
      if (slot->stream != nullptr) {
        slot->stream->Deliver(std::move(events), std::move(logs), absl::Now());
      }
    }
    changes_->WaitFor(generation, options_.poll_interval);
  }
}

}  // namespace linearize::scheduler
