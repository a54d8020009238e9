// Moving a task's files around the artifact store: a checkpoint into the
// next attempt's or stage's output_path, an exported model into the
// published directory. Files are hard-linked when source and destination
// share a file system (the pipeline never rewrites a file in place: a new
// checkpoint is a new directory renamed over the old one), copied
// otherwise. POSIX calls only (torch-linked binary: no std::filesystem).
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace linearize::worker {

// Copies the directory `from` (regular files and subdirectories,
// recursively) to `to`, which must not exist yet. Errors name the file.
absl::Status CopyTree(const std::string& from, const std::string& to);

// Copies what a converted Hugging Face directory needs to be served
// (its regular files and the adapter/ folder; not checkpoint/ or anything
// else) from `from` to `to` (created). `on_file` is told each file copied.
// FAILED_PRECONDITION when `from` has no config.json.
absl::Status CopyModel(const std::string& from, const std::string& to,
                       const std::function<void(const std::string& name)>& on_file = nullptr);

// Whether `path` exists.
bool Exists(const std::string& path);

}  // namespace linearize::worker
