#include "common/io/mapped_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/io/dtype.h"
#include "tests/unit/io/test_util.h"

namespace linearize::io {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
using testing::WriteFile;

TEST(MappedFileTest, MapsContents) {
  TempDir dir;
  WriteFile(dir.File("a.bin"), "hello");
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(dir.File("a.bin"));
  ASSERT_TRUE(f.ok()) << f.status();
  std::span<const std::byte> b = (*f)->bytes();
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "hello");
  EXPECT_EQ((*f)->path(), dir.File("a.bin"));
}

TEST(MappedFileTest, EmptyFileIsEmptySpan) {
  TempDir dir;
  WriteFile(dir.File("empty"), "");
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(dir.File("empty"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->bytes().empty());
}

TEST(MappedFileTest, MissingFileIsNotFoundAndNamesPath) {
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open("/nonexistent/x.bin");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/x.bin"));
}

TEST(MappedFileTest, DirectoryIsRejected) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<MappedFile>> f = MappedFile::Open(dir.path());
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("not a regular file"));
}

TEST(DTypeTest, NamesSizesAndParsing) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    absl::StatusOr<DType> back = ParseDType(DTypeName(d));
    ASSERT_TRUE(back.ok()) << DTypeName(d);
    EXPECT_EQ(*back, d);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  EXPECT_EQ(DTypeName(DType::kBool), "BOOL");
  absl::StatusOr<DType> bad = ParseDType("F8_E4M3");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("F8_E4M3"));
}

}  // namespace
}  // namespace linearize::io
