// Small POSIX file helpers for the pipeline's output and checkpoints.
// (std::filesystem::remove_all is avoided: the torch wheel exports its own
// std::filesystem symbols and remove_all crashes in binaries linked with it.)
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace linearize::convert {

bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
// mkdir -p.
absl::Status MakeDirs(const std::string& path);
// rm -rf; OK when `path` does not exist.
absl::Status RemoveTree(const std::string& path);
absl::StatusOr<std::string> ReadFile(const std::string& path);
// The absolute path with symlinks resolved (the path must exist).
absl::StatusOr<std::string> RealPath(const std::string& path);
// Writes through a temporary file (synced) renamed into place: `path` is
// either the old or the new contents, never partial; on failure the
// temporary is removed and the error (RESOURCE_EXHAUSTED for a full disk)
// names `path`.
absl::Status WriteFileAtomic(const std::string& path, const std::string& contents);
absl::Status CopyFile(const std::string& from, const std::string& to);
absl::Status Rename(const std::string& from, const std::string& to);
// absl::ErrnoToStatus(errno, "<what> <path>").
absl::Status Errno(const std::string& what, const std::string& path);

}  // namespace linearize::convert
