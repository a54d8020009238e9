// The models the inference service serves: loaded weights, tokenizer, chat
// format, fingerprint and one continuous-batching Engine each.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/model/load.h"
#include "common/runtime/engine.h"

namespace linearize::inference {

struct ServedModel {
  std::string name;
  std::string path;         // what was loaded
  std::string fingerprint;  // "sha256:..." of the weights and config files
  model::LoadedModel loaded;
  std::vector<int32_t> stop_ids;  // end-of-sequence and end-of-turn tokens
  std::vector<int32_t> turn_end;  // the chat turn-end marker, e.g. "<|im_end|>\n"
  int64_t state_bytes = 0;        // one fresh session's state (fixed when recurrent)
  absl::Time load_time;
  std::unique_ptr<runtime::Engine> engine;
};

class ModelRegistry {
 public:
  explicit ModelRegistry(runtime::EngineOptions engine_options) : engine_options_(engine_options) {}

  // Loads `path` (a converted or original checkpoint directory, or a .gguf)
  // under `name`; the same name and path again returns the loaded model.
  // INVALID_ARGUMENT for a bad name; ALREADY_EXISTS when the name serves
  // another path; NOT_FOUND / FAILED_PRECONDITION from the loader.
  absl::StatusOr<std::shared_ptr<ServedModel>> Load(const std::string& name,
                                                    const std::string& path);
  std::shared_ptr<ServedModel> Find(const std::string& name) const;
  // NOT_FOUND when not loaded.
  absl::Status Unload(const std::string& name);
  std::vector<std::shared_ptr<ServedModel>> List() const;  // by name

 private:
  const runtime::EngineOptions engine_options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ServedModel>> models_ ABSL_GUARDED_BY(mu_);
};

// "[a-z0-9._-]{1,128}"; INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateModelName(const std::string& name, const std::string& field);
// The name a path is served under by default: the last component without ".gguf",
// lower-cased, other characters replaced by '-'.
std::string DefaultModelName(const std::string& path);

}  // namespace linearize::inference
