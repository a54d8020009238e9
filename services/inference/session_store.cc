#include "services/inference/session_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace linearize::inference {

std::string_view LifecycleName(Lifecycle state) {
  switch (state) {
    case Lifecycle::kCreated: return "CREATED";
    case Lifecycle::kActive: return "ACTIVE";
    case Lifecycle::kIdle: return "IDLE";
    case Lifecycle::kSpilled: return "SPILLED";
    case Lifecycle::kExpired: return "EXPIRED";
    case Lifecycle::kDeleted: return "DELETED";
  }
  return "UNKNOWN";
}

namespace {

std::string NewId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen gen;
  absl::MutexLock lock(&mu);
  return absl::StrFormat("s-%016x%08x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint32_t>(gen));
}

bool Ended(Lifecycle s) { return s == Lifecycle::kExpired || s == Lifecycle::kDeleted; }

// Writes `data` to `path` atomically: a temporary file, fsync, rename.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::ResourceExhaustedError(absl::StrCat(tmp, ": write failed: ", why));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": ", why));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

int64_t StateBytes(const runtime::SessionState& s) {
  return s.memory->bytes() + (s.logits.defined() ? static_cast<int64_t>(s.logits.nbytes()) : 0);
}

nlohmann::json MetaJson(const SessionInfo& i, const std::string& fingerprint) {
  return {{"id", i.id},
          {"tenant", i.tenant},
          {"model_name", i.model_name},
          {"model_fingerprint", fingerprint},
          {"parent_id", i.parent_id},
          {"tokens_seen", i.tokens_seen},
          {"state_bytes", i.state_bytes},
          {"turns", i.turns},
          {"create_time_us", absl::ToUnixMicros(i.create_time)},
          {"last_use_time_us", absl::ToUnixMicros(i.last_use_time)},
          {"idle_timeout_s", absl::ToDoubleSeconds(i.idle_timeout)},
          {"labels", i.labels}};
}

}  // namespace

struct SessionStore::Record {
  SessionInfo info;
  std::unique_ptr<runtime::SessionState> state;  // resident when set
  int64_t resident_bytes = 0;                    // counted in resident_bytes_
  bool dirty = true;    // changed since last written to disk
  bool on_disk = false;
};

SessionStore::SessionStore(Options options, const ModelRegistry& models)
    : options_(std::move(options)), models_(models) {}

SessionStore::~SessionStore() = default;

std::string SessionStore::PathOf(const std::string& id, const char* ext) const {
  return absl::StrCat(options_.dir, "/", id, ext);
}

absl::Status SessionStore::Open() {
  if (::mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat(options_.dir, ": ", std::strerror(errno)));
  }
  DIR* dir = ::opendir(options_.dir.c_str());
  if (dir == nullptr) return absl::InternalError(absl::StrCat(options_.dir, ": ", std::strerror(errno)));
  std::vector<std::string> metas;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".json") metas.push_back(name);
  }
  ::closedir(dir);
  absl::MutexLock lock(&mu_);
  for (const std::string& name : metas) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(options_.dir, "/", name));
    if (!text.ok()) continue;
    const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;  // a torn write of an old version
    try {
      auto r = std::make_unique<Record>();
      SessionInfo& i = r->info;
      i.id = j.at("id").get<std::string>();
      i.tenant = j.at("tenant").get<std::string>();
      i.model_name = j.at("model_name").get<std::string>();
      i.parent_id = j.at("parent_id").get<std::string>();
      i.tokens_seen = j.at("tokens_seen").get<int64_t>();
      i.state_bytes = j.at("state_bytes").get<int64_t>();
      i.turns = j.at("turns").get<int64_t>();
      i.create_time = absl::FromUnixMicros(j.at("create_time_us").get<int64_t>());
      i.last_use_time = absl::FromUnixMicros(j.at("last_use_time_us").get<int64_t>());
      i.idle_timeout = absl::Seconds(j.at("idle_timeout_s").get<double>());
      i.labels = j.at("labels").get<std::map<std::string, std::string>>();
      i.state = Lifecycle::kSpilled;
      r->dirty = false;
      r->on_disk = true;
      struct stat st {};
      if (::stat(PathOf(i.id, ".state").c_str(), &st) != 0) continue;
      sessions_[i.id] = std::move(r);
    } catch (const nlohmann::json::exception&) {
      continue;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SessionStore::Record*> SessionStore::Live(const std::string& tenant,
                                                         const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->info.tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  }
  Record& r = *it->second;
  if (Ended(r.info.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", id, " is ", std::string(LifecycleName(r.info.state)), " since ",
                     absl::FormatTime(r.info.end_time)));
  }
  if (r.info.state == Lifecycle::kActive) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id, " is ACTIVE"));
  }
  return &r;
}

absl::Status SessionStore::WriteToDisk(Record& r) {
  if (r.state == nullptr) return absl::OkStatus();  // spilled: the disk copy is current
  std::shared_ptr<ServedModel> model = models_.Find(r.info.model_name);
  if (model == nullptr) return absl::FailedPreconditionError("model not loaded");
  absl::StatusOr<std::string> blob =
      runtime::EncodeState(*r.state->memory, r.state->logits, model->fingerprint);
  if (!blob.ok()) return blob.status();
  if (absl::Status s = WriteFileAtomic(PathOf(r.info.id, ".state"), *blob); !s.ok()) return s;
  if (absl::Status s = WriteFileAtomic(PathOf(r.info.id, ".json"),
                                       MetaJson(r.info, model->fingerprint).dump());
      !s.ok()) {
    return s;
  }
  r.dirty = false;
  r.on_disk = true;
  return absl::OkStatus();
}

absl::Status SessionStore::Spill(Record& r) {
  if (r.dirty || !r.on_disk) {
    if (absl::Status s = WriteToDisk(r); !s.ok()) return s;
  }
  resident_bytes_ -= r.resident_bytes;
  r.resident_bytes = 0;
  r.state.reset();
  SetState(r, Lifecycle::kSpilled);
  return absl::OkStatus();
}

// Loads a spilled state and spills least recently used idle sessions (never
// `keep`) until the budget holds it.
absl::Status SessionStore::MakeResident(Record& r, const std::string& keep) {
  std::shared_ptr<ServedModel> model = models_.Find(r.info.model_name);
  if (model == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", r.info.model_name, " of session ", r.info.id, " is not loaded"));
  }
  if (r.state == nullptr) {
    absl::StatusOr<std::string> blob = ReadFile(PathOf(r.info.id, ".state"));
    if (!blob.ok()) return absl::InternalError(std::string(blob.status().message()));
    absl::StatusOr<runtime::SessionState> state =
        runtime::DecodeState(*blob, *model->loaded.model, model->fingerprint);
    if (!state.ok()) return state.status();
    r.state = std::make_unique<runtime::SessionState>(*std::move(state));
  }
  const int64_t need = StateBytes(*r.state);
  resident_bytes_ += need - r.resident_bytes;
  r.resident_bytes = need;
  while (resident_bytes_ > options_.memory_budget_bytes) {
    Record* victim = nullptr;
    for (auto& [id, other] : sessions_) {
      if (other.get() == &r || id == keep || other->state == nullptr ||
          other->info.state != Lifecycle::kIdle) {
        continue;
      }
      if (victim == nullptr || other->info.last_use_time < victim->info.last_use_time) {
        victim = other.get();
      }
    }
    if (victim == nullptr) {
      if (r.info.state == Lifecycle::kSpilled || r.info.state == Lifecycle::kCreated) {
        resident_bytes_ -= r.resident_bytes;
        r.resident_bytes = 0;
        r.state.reset();
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "no room for session ", r.info.id, ": its state needs ", need, " bytes and every ",
          "resident session is ACTIVE (memory budget ", options_.memory_budget_bytes, " bytes)"));
    }
    if (absl::Status s = Spill(*victim); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> SessionStore::Create(const std::string& tenant,
                                                 const std::string& model_name,
                                                 std::unique_ptr<runtime::SessionState> state,
                                                 const NewSessionOptions& options) {
  if (options.idle_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("options.idle_timeout must not be negative");
  }
  std::shared_ptr<ServedModel> model = models_.Find(model_name);
  if (model == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("model ", model_name, " is not loaded"));
  }
  if (state == nullptr) {
    state = std::make_unique<runtime::SessionState>();
    state->memory = model->loaded.model->NewMemory(1);
  }
  auto r = std::make_unique<Record>();
  SessionInfo& i = r->info;
  i.id = NewId();
  i.tenant = tenant;
  i.model_name = model_name;
  i.parent_id = options.parent_id;
  i.labels = options.labels;
  i.idle_timeout = options.idle_timeout == absl::ZeroDuration()
                       ? options_.default_idle_timeout
                       : std::min(options.idle_timeout, options_.max_idle_timeout);
  i.create_time = i.last_use_time = absl::Now();
  i.tokens_seen = state->memory->position();
  i.state_bytes = StateBytes(*state);
  i.state = Lifecycle::kCreated;
  r->state = std::move(state);
  absl::MutexLock lock(&mu_);
  Record& rec = *r;
  sessions_[i.id] = std::move(r);
  if (absl::Status s = MakeResident(rec, ""); !s.ok()) {
    sessions_.erase(rec.info.id);
    return s;
  }
  SetState(rec, Lifecycle::kIdle);
  return rec.info;
}

absl::StatusOr<std::unique_ptr<SessionStore::Pin>> SessionStore::Acquire(const std::string& tenant,
                                                                         const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = Live(tenant, id);
  if (!found.ok()) return found.status();
  Record& r = **found;
  const absl::Time start = absl::Now();
  const bool was_spilled = r.state == nullptr;
  if (absl::Status s = MakeResident(r, id); !s.ok()) return s;
  auto pin = std::unique_ptr<Pin>(new Pin());
  pin->store_ = this;
  pin->state_ = r.state.get();
  pin->model_ = models_.Find(r.info.model_name);
  pin->restore_seconds_ = was_spilled ? absl::ToDoubleSeconds(absl::Now() - start) : 0;
  SetState(r, Lifecycle::kActive);
  r.info.last_use_time = absl::Now();
  pin->info_ = r.info;
  return pin;
}

SessionStore::Pin::~Pin() {
  if (store_ != nullptr) store_->Release(*this);
}

void SessionStore::Release(Pin& pin) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(pin.info_.id);
  if (it == sessions_.end()) return;
  Record& r = *it->second;
  // The state pointer may have been replaced by the engine (restored backup).
  r.info.tokens_seen = r.state->memory->position();
  r.info.state_bytes = StateBytes(*r.state);
  resident_bytes_ += r.info.state_bytes - r.resident_bytes;
  r.resident_bytes = r.info.state_bytes;
  r.info.last_use_time = absl::Now();
  r.info.turns += 1;
  r.dirty = true;
  if (r.info.state == Lifecycle::kDeleted) {  // deleted while it ran
    resident_bytes_ -= r.resident_bytes;
    r.resident_bytes = 0;
    r.state.reset();
    return;
  }
  SetState(r, Lifecycle::kIdle);
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& tenant,
                                              const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->info.tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  }
  return it->second->info;
}

std::vector<SessionInfo> SessionStore::List(const std::string& tenant,
                                            const std::string& model_name) const {
  absl::MutexLock lock(&mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, r] : sessions_) {
    if (r->info.tenant != tenant || Ended(r->info.state)) continue;
    if (!model_name.empty() && r->info.model_name != model_name) continue;
    out.push_back(r->info);
  }
  std::sort(out.begin(), out.end(), [](const SessionInfo& a, const SessionInfo& b) {
    return a.last_use_time > b.last_use_time || (a.last_use_time == b.last_use_time && a.id < b.id);
  });
  return out;
}

void SessionStore::End(Record& r, Lifecycle why) {
  r.info.end_time = absl::Now();
  ::unlink(PathOf(r.info.id, ".state").c_str());
  ::unlink(PathOf(r.info.id, ".json").c_str());
  r.on_disk = false;
  if (r.info.state != Lifecycle::kActive) {  // an ACTIVE state is freed on release
    resident_bytes_ -= r.resident_bytes;
    r.resident_bytes = 0;
    r.state.reset();
  }
  SetState(r, why);
}

void SessionStore::SetState(Record& r, Lifecycle to) {
  if (options_.on_transition && r.info.state != to) options_.on_transition(r.info.state, to);
  r.info.state = to;
}

absl::Status SessionStore::Delete(const std::string& tenant, const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->info.tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  }
  if (!Ended(it->second->info.state)) End(*it->second, Lifecycle::kDeleted);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<runtime::SessionState>> SessionStore::CopyState(
    const std::string& tenant, const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = Live(tenant, id);
  if (!found.ok()) return found.status();
  Record& r = **found;
  std::shared_ptr<ServedModel> model = models_.Find(r.info.model_name);
  if (model == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("model ", r.info.model_name, " is not loaded"));
  }
  if (r.state != nullptr) {
    auto copy = std::make_unique<runtime::SessionState>();
    copy->memory = r.state->memory->Clone();
    if (r.state->logits.defined()) copy->logits = r.state->logits.clone();
    return copy;
  }
  absl::StatusOr<std::string> blob = ReadFile(PathOf(id, ".state"));
  if (!blob.ok()) return absl::InternalError(std::string(blob.status().message()));
  absl::StatusOr<runtime::SessionState> state =
      runtime::DecodeState(*blob, *model->loaded.model, model->fingerprint);
  if (!state.ok()) return state.status();
  return std::make_unique<runtime::SessionState>(*std::move(state));
}

absl::StatusOr<std::pair<std::string, SessionInfo>> SessionStore::Snapshot(
    const std::string& tenant, const std::string& id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Record*> found = Live(tenant, id);
  if (!found.ok()) return found.status();
  Record& r = **found;
  if (r.state == nullptr) {  // spilled: the file is the encoded state
    absl::StatusOr<std::string> blob = ReadFile(PathOf(id, ".state"));
    if (!blob.ok()) return absl::InternalError(std::string(blob.status().message()));
    return std::make_pair(*std::move(blob), r.info);
  }
  std::shared_ptr<ServedModel> model = models_.Find(r.info.model_name);
  if (model == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("model ", r.info.model_name, " is not loaded"));
  }
  absl::StatusOr<std::string> blob =
      runtime::EncodeState(*r.state->memory, r.state->logits, model->fingerprint);
  if (!blob.ok()) return blob.status();
  return std::make_pair(*std::move(blob), r.info);
}

void SessionStore::Sweep() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Record& r = *it->second;
    if (Ended(r.info.state)) {
      if (now - r.info.end_time > options_.tombstone_time) {
        it = sessions_.erase(it);
        continue;
      }
    } else if ((r.info.state == Lifecycle::kIdle || r.info.state == Lifecycle::kSpilled) &&
               now - r.info.last_use_time > r.info.idle_timeout) {
      End(r, Lifecycle::kExpired);
    }
    ++it;
  }
}

absl::Status SessionStore::Persist(bool all) {
  absl::MutexLock lock(&mu_);
  absl::Status first;
  for (auto& [id, r] : sessions_) {
    if (Ended(r->info.state) || r->state == nullptr) continue;
    if (r->info.state == Lifecycle::kActive) continue;  // mid-call: written when idle again
    if (!all && !r->dirty) continue;
    if (absl::Status s = WriteToDisk(*r); !s.ok() && first.ok()) first = s;
  }
  return first;
}

SessionStore::Usage SessionStore::usage() const {
  absl::MutexLock lock(&mu_);
  Usage u;
  u.resident_bytes = resident_bytes_;
  for (const auto& [id, r] : sessions_) {
    if (Ended(r->info.state)) continue;
    if (r->info.state == Lifecycle::kActive) ++u.active;
    if (r->state != nullptr) {
      ++u.resident;
    } else {
      ++u.spilled;
      u.spilled_bytes += r->info.state_bytes;
    }
  }
  return u;
}

}  // namespace linearize::inference
