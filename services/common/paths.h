// Paths that users give (common.proto "Paths"): always relative to the
// artifact root, never escaping it, not through ".." and not through a
// symlink. Uses POSIX calls only (no std::filesystem: torch-linked binaries
// see LibTorch's copy of it).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace linearize::server {

// Returns the absolute path of `user_path` inside `root`, with symlinks in
// its existing part resolved. The path need not exist (outputs); the part
// that exists must stay inside the root once symlinks are followed.
// Errors (INVALID_ARGUMENT, naming `field`): empty or the root itself
// (".", "./"), absolute, a ".."
// component, a NUL byte, longer than 4096 bytes or a component longer than
// 255, or resolving outside the root. FAILED_PRECONDITION if the root
// itself is missing.
absl::StatusOr<std::string> ResolveUnderRoot(std::string_view root, std::string_view user_path,
                                             std::string_view field_name);

// Like ResolveUnderRoot, and the path must exist: NOT_FOUND naming the
// field and the path otherwise.
absl::StatusOr<std::string> ResolveExistingUnderRoot(std::string_view root,
                                                     std::string_view user_path,
                                                     std::string_view field_name);

}  // namespace linearize::server
