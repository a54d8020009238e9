#include "services/scheduler/artifact_root.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace linearize::scheduler {
namespace {

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return absl::NotFoundError(path);
  return std::string(buf);
}

}  // namespace

absl::StatusOr<ArtifactRoot> ArtifactRoot::Open(const std::string& dir) {
  absl::StatusOr<std::string> real = RealPath(dir);
  struct stat st;
  if (!real.ok() || stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("artifact root \"", dir, "\" is not an existing directory"));
  }
  std::string root = *real;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  return ArtifactRoot(root);
}

absl::Status ArtifactRoot::CheckForm(std::string_view path, const std::string& field) {
  const std::string p(path);
  if (p.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (p.size() > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most 4096 bytes, got ", p.size()));
  }
  if (p.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", p, "\" is absolute; paths are relative to the artifact root"));
  }
  for (absl::string_view part : absl::StrSplit(p, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", p, "\" contains \"..\"; paths must stay inside the "
                                        "artifact root"));
    }
    if (part.empty() || part == ".") {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", p, "\" is not a clean relative path (empty or \".\" component)"));
    }
  }
  for (char c : p) {
    if (c == '\0' || c == '\\') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": contains a NUL or backslash character"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ArtifactRoot::Resolve(std::string_view path,
                                                  const std::string& field) const {
  if (absl::Status s = CheckForm(path, field); !s.ok()) return s;
  const std::string joined = absl::StrCat(dir_, "/", std::string(path));
  absl::StatusOr<std::string> real = RealPath(joined);
  if (!real.ok()) {
    return absl::NotFoundError(absl::StrCat(field, ": \"", std::string(path),
                                            "\" does not exist under the artifact root"));
  }
  if (*real != dir_ && real->rfind(dir_ + "/", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", std::string(path), "\" resolves outside the artifact root (symlink)"));
  }
  if (access(real->c_str(), R_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(field, ": \"", std::string(path), "\" cannot be read"));
  }
  return *real;
}

}  // namespace linearize::scheduler
