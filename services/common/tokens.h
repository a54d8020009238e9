// Bearer tokens: who is calling (tenant) and what they may do (role).
//
// Tokens file: one token per line, "<token> <tenant> <role>", fields
// separated by spaces or tabs; blank lines and lines starting with '#' are
// ignored. Tokens are 16 to 512 printable ASCII characters without spaces;
// tenants 1 to 64 characters from [A-Za-z0-9._-]; roles user, worker or
// admin. Example:
//   # token                            tenant   role
//   3f9c2b8e51d04a7e9a1c6d2f0b7e4c15   acme     user
//   w-7d1e0c9a4b2f48e6a3c5d9e1f0a2b4c6 ops      worker
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::server {

// user: the public services (JobService, EvaluationService,
// InferenceService) for its own tenant. worker: the internal WorkerService.
// admin: every RPC (access rules never refuse it); whether it also sees
// other tenants' resources is each service's decision. What user and worker
// may call is the server's AccessRule list (auth.h).
enum class Role { kUser, kWorker, kAdmin };

std::string_view RoleName(Role role);
absl::StatusOr<Role> ParseRole(std::string_view text);

// The authenticated caller of an RPC.
struct Principal {
  std::string tenant;
  Role role = Role::kUser;
  // False when the server runs without a tokens file (auth off).
  bool authenticated = false;
};

// Whether `tenant` is 1 to 64 characters from [A-Za-z0-9._-].
bool IsValidTenant(std::string_view tenant);

class TokenTable {
 public:
  // Reads a tokens file. Errors name the file and line: INVALID_ARGUMENT
  // for malformed lines and repeated tokens, NOT_FOUND / PERMISSION_DENIED
  // when the file cannot be read. An empty table is INVALID_ARGUMENT (it
  // would lock everyone out; leave the file unset to turn auth off).
  static absl::StatusOr<std::unique_ptr<TokenTable>> Load(const std::string& path);
  // The same from text; `source` names it in errors.
  static absl::StatusOr<std::unique_ptr<TokenTable>> Parse(std::string_view text,
                                                           std::string_view source);

  // The principal of an "authorization" metadata value. UNAUTHENTICATED
  // with a message saying what is wrong: missing, not "Bearer <token>", or
  // an unknown token. Compares in constant time per entry.
  absl::StatusOr<Principal> Authenticate(std::string_view authorization) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string token;
    Principal principal;
  };
  std::vector<Entry> entries_;
};

}  // namespace linearize::server
