#include "services/common/paths.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace linearize::server {
namespace {

constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxComponentBytes = 255;

std::string Quote(std::string_view s) { return absl::StrCat("\"", std::string(s), "\""); }

absl::Status Invalid(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": ", std::string(what)));
}

bool RealPath(const std::string& path, std::string* out) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return false;
  *out = buf;
  return true;
}

bool Inside(const std::string& root, const std::string& path) {
  if (path == root) return true;
  const std::string prefix = root == "/" ? root : root + "/";
  return path.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

absl::StatusOr<std::string> ResolveUnderRoot(std::string_view root, std::string_view user_path,
                                             std::string_view field_name) {
  if (user_path.empty()) return Invalid(field_name, "must not be empty");
  if (user_path.size() > kMaxPathBytes) {
    return Invalid(field_name, absl::StrCat("must be at most ", kMaxPathBytes, " bytes, got ",
                                            user_path.size()));
  }
  if (user_path.find('\0') != std::string_view::npos) {
    return Invalid(field_name, "must not contain a NUL byte");
  }
  if (user_path.front() == '/') {
    return Invalid(field_name,
                   absl::StrCat("must be relative to the artifact root, got ", Quote(user_path)));
  }
  // Split into components; "." and empty ones (a//b, a/) are dropped.
  std::vector<std::string> parts;
  for (size_t start = 0; start <= user_path.size();) {
    size_t slash = user_path.find('/', start);
    if (slash == std::string_view::npos) slash = user_path.size();
    std::string_view part = user_path.substr(start, slash - start);
    if (part == "..") {
      return Invalid(field_name, absl::StrCat("must not contain \"..\", got ", Quote(user_path)));
    }
    if (part.size() > kMaxComponentBytes) {
      return Invalid(field_name,
                     absl::StrCat("has a component longer than ", kMaxComponentBytes, " bytes"));
    }
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = slash + 1;
  }

  if (parts.empty()) {
    return Invalid(field_name, absl::StrCat("must name something inside the artifact root, got ",
                                            Quote(user_path)));
  }

  std::string real_root;
  if (!RealPath(std::string(root), &real_root)) {
    return absl::FailedPreconditionError(
        absl::StrCat("artifact root ", Quote(root), " is not usable: ", std::strerror(errno)));
  }
  // Walk down while the path exists, resolving symlinks as the kernel
  // would; the first missing component ends the walk and the rest is
  // appended as is (nothing below a missing directory can be a symlink).
  std::string resolved = real_root;
  size_t i = 0;
  for (; i < parts.size(); ++i) {
    std::string next = resolved == "/" ? "/" + parts[i] : resolved + "/" + parts[i];
    struct stat st;
    if (lstat(next.c_str(), &st) != 0) break;
    if (!RealPath(next, &resolved)) {
      // A dangling symlink: where it points decides.
      return Invalid(field_name,
                     absl::StrCat(Quote(user_path), " goes through a broken symbolic link"));
    }
    if (!Inside(real_root, resolved)) {
      return Invalid(field_name,
                     absl::StrCat(Quote(user_path), " resolves outside the artifact root"));
    }
  }
  for (; i < parts.size(); ++i) resolved += "/" + parts[i];
  return resolved;
}

absl::StatusOr<std::string> ResolveExistingUnderRoot(std::string_view root,
                                                     std::string_view user_path,
                                                     std::string_view field_name) {
  auto resolved = ResolveUnderRoot(root, user_path, field_name);
  if (!resolved.ok()) return resolved.status();
  struct stat st;
  if (stat(resolved->c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(std::string(field_name), ": ", Quote(user_path),
                                            " does not exist under the artifact root"));
  }
  return resolved;
}

}  // namespace linearize::server
