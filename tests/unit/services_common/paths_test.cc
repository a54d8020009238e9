#include "services/common/paths.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "gtest/gtest.h"

namespace linearize::server {
namespace {

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/paths_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ + "/root";
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/models").c_str(), 0755), 0);
    std::ofstream(root_ + "/models/a.gguf") << "x";
    std::ofstream(base_ + "/secret") << "s";
    ASSERT_EQ(symlink("../secret", (root_ + "/escape").c_str()), 0);
    ASSERT_EQ(symlink(base_.c_str(), (root_ + "/abs_escape").c_str()), 0);
    ASSERT_EQ(symlink("models", (root_ + "/inside").c_str()), 0);
    ASSERT_EQ(symlink("nowhere", (root_ + "/dangling").c_str()), 0);
  }
  void TearDown() override { system(("rm -rf " + base_).c_str()); }

  std::string base_;
  std::string root_;
};

TEST_F(PathsTest, ResolvesInsideTheRoot) {
  auto p = ResolveUnderRoot(root_, "models/a.gguf", "teacher.artifact_path");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, root_ + "/models/a.gguf");
  // "." and repeated slashes are fine.
  EXPECT_EQ(*ResolveUnderRoot(root_, "./models//a.gguf", "f"), root_ + "/models/a.gguf");
  // A symlink that stays inside resolves to its target.
  EXPECT_EQ(*ResolveUnderRoot(root_, "inside/a.gguf", "f"), root_ + "/models/a.gguf");
  // Outputs need not exist yet.
  EXPECT_EQ(*ResolveUnderRoot(root_, "jobs/j-1/out/model.safetensors", "f"),
            root_ + "/jobs/j-1/out/model.safetensors");
  // A root given through a symlink or with a trailing slash works too.
  EXPECT_EQ(*ResolveUnderRoot(root_ + "/", "models", "f"), root_ + "/models");
}

TEST_F(PathsTest, RejectsEscapesNamingTheField) {
  struct Case {
    const char* path;
    const char* expect;
  } cases[] = {
      {"", "data.path: must not be empty"},
      {"/etc/passwd", "data.path: must be relative to the artifact root"},
      {"../secret", "data.path: must not contain \"..\""},
      {"models/../../secret", "must not contain \"..\""},
      {"models/..", "must not contain \"..\""},
      {"escape", "resolves outside the artifact root"},
      {"abs_escape/secret", "resolves outside the artifact root"},
      {"dangling", "broken symbolic link"},
      {".", "must name something inside the artifact root"},
      {"./", "must name something inside the artifact root"},
  };
  for (const Case& c : cases) {
    auto p = ResolveUnderRoot(root_, c.path, "data.path");
    ASSERT_FALSE(p.ok()) << c.path;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.path;
    EXPECT_NE(p.status().message().find(c.expect), std::string::npos)
        << c.path << ": " << p.status();
    EXPECT_NE(p.status().message().find("data.path"), std::string::npos) << c.path;
  }
  EXPECT_FALSE(ResolveUnderRoot(root_, std::string("a\0b", 3), "f").ok());
  EXPECT_FALSE(ResolveUnderRoot(root_, std::string(300, 'x'), "f").ok());
  EXPECT_FALSE(ResolveUnderRoot(root_, std::string(5000, 'x'), "f").ok());
  // ".." inside a name is not a ".." component.
  EXPECT_TRUE(ResolveUnderRoot(root_, "models/a..b", "f").ok());
}

TEST_F(PathsTest, ExistingVariantSaysNotFound) {
  EXPECT_TRUE(ResolveExistingUnderRoot(root_, "models/a.gguf", "f").ok());
  auto missing = ResolveExistingUnderRoot(root_, "models/b.gguf", "teacher.artifact_path");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "teacher.artifact_path: \"models/b.gguf\" does not exist under the artifact root");
  // Escapes stay INVALID_ARGUMENT, not NOT_FOUND.
  EXPECT_EQ(ResolveExistingUnderRoot(root_, "../x", "f").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PathsTest, MissingRootIsFailedPrecondition) {
  EXPECT_EQ(ResolveUnderRoot(base_ + "/nope", "a", "f").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace linearize::server
