#include "common/convert/block_merge.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/convert/fs_util.h"
#include "common/convert/tensor_file.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

// Tensors a block owns (its layers); the others are the same in every block.
bool PerLayer(const std::string& name) {
  return name.starts_with("student/") || name.starts_with("adam/");
}

}  // namespace

absl::Status MergeStage1Checkpoints(const std::vector<std::string>& blocks,
                                    const std::string& out) {
  if (blocks.empty()) return absl::InvalidArgumentError("no block checkpoints to merge");
  nlohmann::json state;
  NamedTensorList merged;
  std::map<std::string, std::string> owner;  // tensor -> the block it came from
  double initial_mse = 0, final_mse = 0;
  for (const std::string& dir : blocks) {
    const std::string where = dir + "/state.json";
    absl::StatusOr<std::string> text = ReadFile(where);
    if (!text.ok()) return text.status();
    const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("fingerprint") ||
        !j.contains("stage") || !j.contains("step")) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a pipeline checkpoint"));
    }
    if (j["stage"] != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": stage ", j["stage"].dump(), ", not the end of stage 1"));
    }
    if (state.is_null()) {
      state = j;
    } else if (j["fingerprint"] != state["fingerprint"] || j["step"] != state["step"]) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": another conversion or step (", j["fingerprint"].dump(), " at step ",
          j["step"].dump(), ") than ", blocks.front(), " (", state["fingerprint"].dump(),
          " at step ", state["step"].dump(), ")"));
    }
    initial_mse += j.value("initial_val_mse", 0.0);
    final_mse += j.value("final_val_mse", 0.0);
    absl::StatusOr<std::map<std::string, at::Tensor>> tensors =
        ReadTensorFile(dir + "/tensors.safetensors");
    if (!tensors.ok()) return tensors.status();
    for (auto& [name, t] : *tensors) {
      auto [it, fresh] = owner.try_emplace(name, dir);
      if (!fresh) {
        if (PerLayer(name)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "blocks overlap: ", name, " is in both ", it->second, " and ", dir));
        }
        continue;  // data and LoRA: identical in every block
      }
      merged.emplace_back(name, std::move(t));
    }
  }
  state["initial_val_mse"] = initial_mse;
  state["final_val_mse"] = final_mse;
  state["best"] = -1.0;  // stage 2 starts its own bookkeeping
  const std::string tmp = out + ".tmp";
  if (absl::Status s = RemoveTree(tmp); !s.ok()) return s;
  if (absl::Status s = MakeDirs(tmp); !s.ok()) return s;
  if (absl::Status s = WriteTensorFile(tmp + "/tensors.safetensors", merged); !s.ok()) return s;
  if (absl::Status s = WriteFileAtomic(tmp + "/state.json", state.dump(2) + "\n"); !s.ok()) {
    return s;
  }
  if (absl::Status s = RemoveTree(out); !s.ok()) return s;
  return Rename(tmp, out);
}

}  // namespace linearize::convert
