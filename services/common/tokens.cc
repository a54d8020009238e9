#include "services/common/tokens.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace linearize::server {
namespace {

constexpr size_t kMinTokenBytes = 16;
constexpr size_t kMaxTokenBytes = 512;

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool IsTokenChar(char c) { return c > ' ' && c < 0x7f; }

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "user";
}

absl::StatusOr<Role> ParseRole(std::string_view text) {
  if (text == "user") return Role::kUser;
  if (text == "worker") return Role::kWorker;
  if (text == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("role must be user, worker or admin, got \"", std::string(text), "\""));
}

bool IsValidTenant(std::string_view tenant) {
  if (tenant.empty() || tenant.size() > 64) return false;
  for (char c : tenant) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<TokenTable>> TokenTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    std::string message =
        absl::StrCat("tokens file \"", path, "\": cannot read: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), absl::StrCat("tokens file \"", path, "\""));
}

absl::StatusOr<std::unique_ptr<TokenTable>> TokenTable::Parse(std::string_view text,
                                                              std::string_view source) {
  auto table = std::unique_ptr<TokenTable>(new TokenTable());
  const std::string where(source);
  int line_number = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto fields = Fields(line);
    if (fields.empty() || fields[0].front() == '#') continue;
    auto fail = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(where, " line ", line_number, ": ", what));
    };
    if (fields.size() != 3) {
      return fail(
          absl::StrCat("expected \"<token> <tenant> <role>\", got ", fields.size(), " fields"));
    }
    const std::string_view token = fields[0];
    if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
      return fail(absl::StrCat("token must be ", kMinTokenBytes, " to ", kMaxTokenBytes,
                               " characters, got ", token.size()));
    }
    for (char c : token) {
      if (!IsTokenChar(c)) return fail("token must be printable ASCII without spaces");
    }
    if (!IsValidTenant(fields[1])) {
      return fail(absl::StrCat("tenant must be 1 to 64 characters from [A-Za-z0-9._-], got \"",
                               std::string(fields[1]), "\""));
    }
    auto role = ParseRole(fields[2]);
    if (!role.ok()) return fail(std::string(role.status().message()));
    for (const Entry& e : table->entries_) {
      if (e.token == token) return fail("token repeats an earlier line");
    }
    table->entries_.push_back(Entry{std::string(token), Principal{std::string(fields[1]), *role,
                                                                  /*authenticated=*/true}});
  }
  if (table->entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": has no tokens (leave the tokens file unset to turn auth off)"));
  }
  return table;
}

absl::StatusOr<Principal> TokenTable::Authenticate(std::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing bearer token: send the metadata \"authorization: Bearer <token>\"");
  }
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() <= kScheme.size() ||
      !(authorization.substr(0, 6) == "Bearer" || authorization.substr(0, 6) == "bearer") ||
      authorization[6] != ' ') {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected \"Bearer <token>\"");
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  const Principal* found = nullptr;
  for (const Entry& e : entries_) {
    // No early exit: the time taken does not tell which entry matched.
    if (ConstantTimeEquals(e.token, token)) found = &e.principal;
  }
  if (found == nullptr)
    return absl::UnauthenticatedError("invalid bearer token: not known to this server");
  return *found;
}

}  // namespace linearize::server
