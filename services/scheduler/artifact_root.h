// The artifact root: the directory every path of the API is relative to.
// Paths given by users are resolved inside it only.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace linearize::scheduler {

class ArtifactRoot {
 public:
  // `dir` must be an existing directory; errors name it.
  static absl::StatusOr<ArtifactRoot> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }

  // Checks a user path's form: non-empty, relative, '/'-separated, no "."
  // or ".." components, at most 4096 bytes. INVALID_ARGUMENT naming `field`.
  static absl::Status CheckForm(std::string_view path, const std::string& field);

  // Resolves an existing path inside the root (symlinks followed) and
  // returns its absolute form. INVALID_ARGUMENT for a bad form or a path
  // that resolves outside the root; NOT_FOUND for a path that does not
  // exist or cannot be read; both name `field` and the path.
  absl::StatusOr<std::string> Resolve(std::string_view path, const std::string& field) const;

 private:
  explicit ArtifactRoot(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;  // absolute, symlinks resolved, no trailing '/'
};

}  // namespace linearize::scheduler
