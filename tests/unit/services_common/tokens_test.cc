#include "services/common/tokens.h"

#include <fstream>

#include "gtest/gtest.h"

namespace linearize::server {
namespace {

constexpr char kTokens[] =
    "# token tenant role\n"
    "\n"
    "user-token-0123456789  acme   user\n"
    "\tworker-token-0123456789\tops\tworker  \r\n"
    "admin-token-0123456789 root admin\n";

TEST(TokensTest, AuthenticatesKnownTokens) {
  auto table = TokenTable::Parse(kTokens, "test");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ((*table)->size(), 3u);
  auto p = (*table)->Authenticate("Bearer user-token-0123456789");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->tenant, "acme");
  EXPECT_EQ(p->role, Role::kUser);
  EXPECT_TRUE(p->authenticated);
  EXPECT_EQ((*table)->Authenticate("bearer worker-token-0123456789")->role, Role::kWorker);
  EXPECT_EQ((*table)->Authenticate("Bearer admin-token-0123456789 ")->tenant, "root");
}

TEST(TokensTest, SaysWhatIsWrongWithTheHeader) {
  auto table = TokenTable::Parse(kTokens, "test");
  ASSERT_TRUE(table.ok());
  struct Case {
    const char* header;
    const char* expect;
  } cases[] = {
      {"", "missing bearer token"},
      {"user-token-0123456789", "expected \"Bearer <token>\""},
      {"Basic dXNlcjpwYXNz", "expected \"Bearer <token>\""},
      {"Bearer", "expected \"Bearer <token>\""},
      {"Bearer wrong-token-0123456789", "invalid bearer token"},
      {"Bearer user-token-012345678", "invalid bearer token"},  // a prefix
  };
  for (const Case& c : cases) {
    auto p = (*table)->Authenticate(c.header);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << c.header;
    EXPECT_NE(p.status().message().find(c.expect), std::string::npos)
        << c.header << ": " << p.status();
  }
}

TEST(TokensTest, RejectsMalformedFilesNamingTheLine) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"a-token-long-enough acme\n", "test line 1: expected \"<token> <tenant> <role>\""},
      {"# c\nshort acme user\n", "test line 2: token must be 16 to 512"},
      {"a-token-long-enough acme root\n", "role must be user, worker or admin, got \"root\""},
      {"a-token-long-enough ac/me user\n", "tenant must be 1 to 64"},
      {"a-token-long-enough a user\na-token-long-enough b user\n",
       "line 2: token repeats an earlier line"},
      {"# only comments\n\n", "has no tokens"},
  };
  for (const Case& c : cases) {
    auto t = TokenTable::Parse(c.text, "test");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << t.status();
  }
}

TEST(TokensTest, LoadsFromFile) {
  char path[] = "/tmp/tokens_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << kTokens;
  auto t = TokenTable::Load(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->size(), 3u);
  unlink(path);
  auto missing = TokenTable::Load(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

TEST(TokensTest, RolesAndTenants) {
  EXPECT_EQ(RoleName(Role::kWorker), "worker");
  EXPECT_EQ(*ParseRole("admin"), Role::kAdmin);
  EXPECT_TRUE(IsValidTenant("acme-corp_1.eu"));
  EXPECT_FALSE(IsValidTenant(""));
  EXPECT_FALSE(IsValidTenant(std::string(65, 'a')));
  EXPECT_FALSE(IsValidTenant("a b"));
}

}  // namespace
}  // namespace linearize::server
