#include "services/inference/model_registry.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/io/sha256.h"
#include "common/tokenizer/chat_template.h"

namespace linearize::inference {
namespace {

// The files whose contents identify a model: the .gguf, or a directory's
// config.json and weight files.
absl::StatusOr<std::string> Fingerprint(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json"}) {
      const std::string f = absl::StrCat(path, "/", name);
      if (::stat(f.c_str(), &st) == 0) files.push_back(f);
    }
  } else {
    files.push_back(path);
  }
  io::Sha256 all;
  for (const std::string& f : files) {
    absl::StatusOr<std::array<uint8_t, 32>> d = io::Sha256OfFile(f);
    if (!d.ok()) return d.status();
    all.Update(std::string_view(reinterpret_cast<const char*>(d->data()), d->size()));
  }
  return io::Sha256Label(all.Finish());
}

std::vector<int32_t> TurnEnd(const model::LoadedModel& m) {
  if (m.tokenizer == nullptr) return {};
  const std::vector<std::string> stops = tokenizer::ChatStopTokens(m.chat_format);
  if (stops.empty()) return {};
  std::string marker = stops.front();
  if (m.chat_format == tokenizer::ChatFormat::kChatML) marker += "\n";
  return m.tokenizer->Encode(marker);
}

// [a-z0-9._-]
bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

absl::Status ValidateModelName(const std::string& name, const std::string& field) {
  const bool ok = !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), IsNameChar);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": \"", name.substr(0, 140), "\" must be 1 to 128 characters from [a-z0-9._-]"));
}

std::string DefaultModelName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string base = p.substr(p.find_last_of('/') == std::string::npos ? 0 : p.find_last_of('/') + 1);
  if (base.size() > 5 && base.substr(base.size() - 5) == ".gguf") base.resize(base.size() - 5);
  for (char& c : base) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!IsNameChar(c)) c = '-';
  }
  if (base.size() > 128) base.resize(128);
  return base.empty() ? "model" : base;
}

absl::StatusOr<std::shared_ptr<ServedModel>> ModelRegistry::Load(const std::string& name,
                                                                 const std::string& given_path) {
  if (absl::Status s = ValidateModelName(name, "name"); !s.ok()) return s;
  // One spelling per file, so the same model loaded by another path is the same.
  char resolved[PATH_MAX];
  if (::realpath(given_path.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat(given_path, ": not found"));
  }
  const std::string path = resolved;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = models_.find(name); it != models_.end()) {
      if (it->second->path == path) return it->second;
      return absl::AlreadyExistsError(absl::StrCat("model ", name, " is already loaded from ",
                                                   it->second->path));
    }
  }
  absl::StatusOr<std::string> fingerprint = Fingerprint(path);
  if (!fingerprint.ok()) return fingerprint.status();
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(path);
  if (!loaded.ok()) return loaded.status();
  if (loaded->tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": has no tokenizer to serve with"));
  }
  // Served, never trained here: one GEMM for q/k/v and one for gate/up.
  loaded->model->FuseProjections();
  auto served = std::make_shared<ServedModel>();
  served->name = name;
  served->path = path;
  served->fingerprint = *fingerprint;
  served->stop_ids = model::StopTokenIds(*loaded);
  served->loaded = *std::move(loaded);
  served->turn_end = TurnEnd(served->loaded);
  {
    // A fresh state after one token: exact for recurrent models, the
    // smallest size of a KV cache.
    auto memory = served->loaded.model->NewMemory(1);
    absl::StatusOr<at::Tensor> r = served->loaded.model->Forward(
        at::zeros({1, 1}, at::TensorOptions().dtype(at::kLong)), memory.get());
    if (!r.ok()) return r.status();
    served->state_bytes = memory->bytes();
  }
  served->load_time = absl::Now();
  served->engine = std::make_unique<runtime::Engine>(*served->loaded.model,
                                                     *served->loaded.tokenizer, engine_options_);
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = models_.emplace(name, served);
  if (!inserted && it->second->path != path) {
    return absl::AlreadyExistsError(absl::StrCat("model ", name, " is already loaded from ",
                                                 it->second->path));
  }
  return it->second;
}

std::shared_ptr<ServedModel> ModelRegistry::Find(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : it->second;
}

absl::Status ModelRegistry::Unload(const std::string& name) {
  absl::MutexLock lock(&mu_);
  if (models_.erase(name) == 0) return absl::NotFoundError(absl::StrCat("model ", name, " is not loaded"));
  return absl::OkStatus();
}

std::vector<std::shared_ptr<ServedModel>> ModelRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<ServedModel>> out;
  for (const auto& [name, m] : models_) out.push_back(m);
  return out;
}

}  // namespace linearize::inference
