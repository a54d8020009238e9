// Sessions of the inference service: each one conversation's model state.
// Resident states count against a memory budget; when a session must become
// resident and the budget is full, the least recently used idle sessions
// spill to disk and come back transparently on their next use. Sessions are
// written to disk periodically (only those that changed) and at shutdown,
// and a store opened on the same directory finds them again, so a session
// survives a restart with the same next-token distribution. Idle sessions
// expire after their idle timeout; ended sessions leave a tombstone for an
// hour. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/runtime/state_codec.h"
#include "services/inference/model_registry.h"

namespace linearize::inference {

enum class Lifecycle { kCreated, kActive, kIdle, kSpilled, kExpired, kDeleted };
std::string_view LifecycleName(Lifecycle state);  // "ACTIVE", ...

struct SessionInfo {
  std::string id, tenant, model_name, parent_id;
  Lifecycle state = Lifecycle::kCreated;
  int64_t tokens_seen = 0, state_bytes = 0, turns = 0;
  absl::Time create_time, last_use_time, end_time = absl::InfinitePast();
  absl::Duration idle_timeout;
  std::map<std::string, std::string> labels;
};

struct NewSessionOptions {
  absl::Duration idle_timeout = absl::ZeroDuration();  // zero: the default
  std::map<std::string, std::string> labels;
  std::string parent_id;
};

class SessionStore {
 public:
  struct Options {
    std::string dir;                        // where spilled and persisted sessions live
    int64_t memory_budget_bytes = 1LL << 30;  // resident states
    absl::Duration default_idle_timeout = absl::Minutes(30);
    absl::Duration max_idle_timeout = absl::Hours(24);
    absl::Duration tombstone_time = absl::Hours(1);
    // Called on every lifecycle change of a session (under the store's
    // lock: keep it cheap), e.g. to count transitions in metrics.
    std::function<void(Lifecycle from, Lifecycle to)> on_transition;
  };
  SessionStore(Options options, const ModelRegistry& models);
  ~SessionStore();

  // Creates the directory and finds the sessions persisted there (SPILLED).
  absl::Status Open();

  // A new IDLE session holding `state` (a fresh memory when null).
  // RESOURCE_EXHAUSTED when it cannot be made resident; INVALID_ARGUMENT
  // for a negative idle timeout; FAILED_PRECONDITION when the model is not loaded.
  absl::StatusOr<SessionInfo> Create(const std::string& tenant, const std::string& model_name,
                                     std::unique_ptr<runtime::SessionState> state,
                                     const NewSessionOptions& options);

  // A session pinned ACTIVE and resident for one call; released (IDLE, with
  // its new state) when destroyed.
  class Pin {
   public:
    ~Pin();
    runtime::SessionState& state() { return *state_; }
    const ServedModel& model() const { return *model_; }
    const SessionInfo& info() const { return info_; }
    double restore_seconds() const { return restore_seconds_; }

   private:
    friend class SessionStore;
    Pin() = default;
    SessionStore* store_ = nullptr;
    runtime::SessionState* state_ = nullptr;
    std::shared_ptr<ServedModel> model_;
    SessionInfo info_;
    double restore_seconds_ = 0;
  };
  // NOT_FOUND (unknown, or another tenant's); FAILED_PRECONDITION (ACTIVE,
  // ended, or the model not loaded); RESOURCE_EXHAUSTED (no room).
  absl::StatusOr<std::unique_ptr<Pin>> Acquire(const std::string& tenant, const std::string& id);

  absl::StatusOr<SessionInfo> Get(const std::string& tenant, const std::string& id) const;
  // Live sessions, most recently used first; `model_name` "" for all.
  std::vector<SessionInfo> List(const std::string& tenant, const std::string& model_name) const;
  // Ends a session (OK if it already ended). NOT_FOUND if unknown.
  absl::Status Delete(const std::string& tenant, const std::string& id);
  // A copy of the session's state (the session is unchanged).
  // FAILED_PRECONDITION when ACTIVE or ended.
  absl::StatusOr<std::unique_ptr<runtime::SessionState>> CopyState(const std::string& tenant,
                                                                   const std::string& id);
  // The encoded state (runtime::EncodeState), and the session's model.
  absl::StatusOr<std::pair<std::string, SessionInfo>> Snapshot(const std::string& tenant,
                                                               const std::string& id);

  // Expires idle sessions and forgets old tombstones.
  void Sweep();
  // Writes every changed session to disk (all, with `all`).
  absl::Status Persist(bool all);

  struct Usage {
    int64_t resident_bytes = 0, spilled_bytes = 0;
    int64_t active = 0, resident = 0, spilled = 0;
  };
  Usage usage() const;

 private:
  struct Record;
  absl::Status MakeResident(Record& r, const std::string& keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Spill(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteToDisk(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void End(Record& r, Lifecycle why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every state change goes through here (Options::on_transition).
  void SetState(Record& r, Lifecycle to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Record*> Live(const std::string& tenant, const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Pin& pin);
  std::string PathOf(const std::string& id, const char* ext) const;

  const Options options_;
  const ModelRegistry& models_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Record>> sessions_ ABSL_GUARDED_BY(mu_);
  int64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace linearize::inference
