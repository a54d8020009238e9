#include "common/io/gguf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/io/test_util.h"

namespace linearize::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::GgufBuilder;
using testing::TempDir;
using testing::WriteFile;

const std::string kQuants = std::string(LINEARIZE_FIXTURES_DIR) + "/io/quants.gguf";

std::unique_ptr<GgufFile> OpenQuants() {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(kQuants);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

TEST(GgufTest, ReadsEveryMetadataType) {
  std::unique_ptr<GgufFile> f = OpenQuants();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->name(), kQuants);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetInt("general.alignment"), 64);
  EXPECT_EQ(*f->GetInt("test.u8"), 200);
  EXPECT_EQ(*f->GetInt("test.i8"), -100);
  EXPECT_EQ(*f->GetInt("test.u16"), 60000);
  EXPECT_EQ(*f->GetInt("test.i16"), -30000);
  EXPECT_EQ(*f->GetInt("test.u32"), 4000000000);
  EXPECT_EQ(*f->GetInt("test.i32"), -2000000000);
  EXPECT_EQ(*f->GetInt("test.i64"), -9000000000000000000);
  // A uint64 above INT64_MAX is kept exactly but is no int64.
  ASSERT_NE(f->Find("test.u64"), nullptr);
  EXPECT_EQ(std::get<uint64_t>(f->Find("test.u64")->v), 18000000000000000000ull);
  absl::StatusOr<int64_t> too_big = f->GetInt("test.u64");
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("test.u64"));
  EXPECT_EQ(*f->GetFloat("test.f32"), 0.25);
  EXPECT_EQ(*f->GetFloat("test.f64"), -1.0e-300);
  EXPECT_EQ(*f->GetFloat("test.u8"), 200.0);  // ints read as floats
  EXPECT_EQ(*f->GetBool("test.bool"), true);
  EXPECT_EQ(*f->GetString("test.string"), "h\xc3\xa9llo gguf");
  EXPECT_THAT(*f->GetStringArray("test.array_str"), ElementsAre("a", "bc", ""));
  EXPECT_THAT(*f->GetIntArray("test.array_int"), ElementsAre(1, -2, 3));
  EXPECT_THAT(*f->GetIntArray("test.array_u8"), ElementsAre(1, 2, 255));
  EXPECT_THAT(*f->GetFloatArray("test.array_f32"), ElementsAre(0.5, -1.5));
  EXPECT_THAT(*f->GetFloatArray("test.array_int"), ElementsAre(1.0, -2.0, 3.0));

  const GgufValue* nested = f->Find("test.array_nested");
  ASSERT_NE(nested, nullptr);
  const auto& outer = std::get<GgufArray>(nested->v);
  ASSERT_EQ(outer.size(), 3u);
  std::vector<size_t> sizes;
  for (const GgufValue& inner : outer) sizes.push_back(std::get<GgufArray>(inner.v).size());
  EXPECT_THAT(sizes, ElementsAre(2, 1, 3));
  EXPECT_EQ(std::get<int64_t>(std::get<GgufArray>(outer[2].v)[2].v), 6);
}

TEST(GgufTest, GetterErrorsNameTheKey) {
  std::unique_ptr<GgufFile> f = OpenQuants();
  ASSERT_NE(f, nullptr);
  absl::StatusOr<std::string> missing = f->GetString("no.such.key");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no.such.key"));
  EXPECT_THAT(missing.status().message(), HasSubstr(kQuants));
  absl::StatusOr<std::string> wrong = f->GetString("test.u8");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("\"test.u8\" is an unsigned integer"));
  EXPECT_EQ(f->GetInt("test.string").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->GetBool("test.u8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->GetFloat("test.bool").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<std::string>> not_strings = f->GetStringArray("test.array_int");
  EXPECT_THAT(not_strings.status().message(), HasSubstr("element 0"));
  EXPECT_EQ(f->GetIntArray("test.string").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->GetIntArray("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(GgufTest, ReadsTensorInfosAndHonoursAlignment) {
  std::unique_ptr<GgufFile> f = OpenQuants();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->tensors().size(), 8u);
  const GgufTensor* q4k = f->FindTensor("t_q4_k");
  ASSERT_NE(q4k, nullptr);
  EXPECT_EQ(q4k->type, GgmlType::kQ4_K);
  EXPECT_THAT(q4k->dims, ElementsAre(512, 2));
  EXPECT_EQ(q4k->numel(), 1024);
  EXPECT_EQ(q4k->data.size(), 4u * 144);
  const GgufTensor* f32 = f->FindTensor("t_f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_THAT(f32->dims, ElementsAre(7, 3));
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
  // Offsets relative to the file start are multiples of general.alignment (64).
  const std::byte* base = f->tensors()[0].data.data();
  for (const GgufTensor& t : f->tensors()) {
    if (t.data.data() < base) base = t.data.data();
  }
  for (const GgufTensor& t : f->tensors()) {
    EXPECT_EQ((t.data.data() - base) % 64, 0) << t.name;
  }
  EXPECT_EQ(GgmlTypeName(GgmlType::kQ6_K), "Q6_K");
  EXPECT_TRUE(IsSupportedGgmlType(GgmlType::kQ4_1));
  EXPECT_FALSE(IsSupportedGgmlType(GgmlType::kQ5_0));
}

TEST(GgufTest, EveryTruncationFails) {
  std::unique_ptr<GgufFile> f = OpenQuants();
  ASSERT_NE(f, nullptr);
  const std::string full = testing::ReadFile(kQuants);
  const std::byte* file_start = nullptr;
  size_t data_end = 0;
  {
    // Find where the last tensor ends, relative to the file start.
    absl::StatusOr<std::unique_ptr<GgufFile>> mem =
        GgufFile::Parse(testing::AsBytes(full), "mem.gguf");
    ASSERT_TRUE(mem.ok()) << mem.status();
    file_start = reinterpret_cast<const std::byte*>(full.data());
    for (const GgufTensor& t : (*mem)->tensors()) {
      data_end = std::max(data_end, static_cast<size_t>(t.data.data() + t.data.size() - file_start));
    }
  }
  ASSERT_GT(data_end, 0u);
  for (size_t len = 0; len < data_end; ++len) {
    absl::Status s = GgufFile::Parse(testing::AsBytes(std::string_view(full).substr(0, len)),
                                     "cut.gguf").status();
    ASSERT_FALSE(s.ok()) << len;
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << len;
    ASSERT_THAT(s.message(), HasSubstr("cut.gguf")) << len;
  }
  // Cut inside test.string's value, and inside the last tensor's data.
  absl::Status s = GgufFile::Parse(testing::AsBytes(std::string_view(full).substr(0, 400)),
                                   "cut.gguf").status();
  EXPECT_THAT(s.message(), HasSubstr("key \"test.string\": string length 11 runs past the end"));
  s = GgufFile::Parse(testing::AsBytes(std::string_view(full).substr(0, data_end - 1)), "cut.gguf")
          .status();
  EXPECT_THAT(s.message(), HasSubstr("tensor \"t_q6_k\""));
  EXPECT_THAT(s.message(), HasSubstr("runs past the end of the file"));
}

struct BadCase {
  std::string name;
  std::string bytes;
  std::string message;
};

TEST(GgufTest, RejectsBadFilesNamingFileAndProblem) {
  const std::vector<BadCase> cases = {
      {"empty", "", "truncated while reading the magic"},
      {"bad magic", GgufBuilder().Raw("GGML").U32(3).U64(0).U64(0).bytes(), "bad magic"},
      {"version 1", GgufBuilder().Header(0, 0, 1).bytes(), "unsupported GGUF version 1"},
      {"big endian", GgufBuilder().Header(0, 0, 0x03000000).bytes(), "unsupported GGUF version"},
      {"huge tensor count", GgufBuilder().Header(uint64_t{1} << 62, 0).bytes(),
       "tensor count 4611686018427387904"},
      {"huge kv count", GgufBuilder().Header(0, ~uint64_t{0}).bytes(), "metadata count"},
      {"huge key length", GgufBuilder().Header(0, 1).U64(~uint64_t{0}).Zeros(16).bytes(),
       "string length 18446744073709551615 exceeds"},
      {"key past EOF", GgufBuilder().Header(0, 1).U64(1000).Zeros(16).bytes(),
       "string length 1000 runs past the end"},
      {"huge string value",
       GgufBuilder().Header(0, 1).Str("k").U32(GgufBuilder::kString).U64(uint64_t{1} << 60).bytes(),
       "key \"k\": string length"},
      {"huge array length",
       GgufBuilder().Header(0, 1).Str("arr").U32(GgufBuilder::kArray).U32(GgufBuilder::kU32)
           .U64(uint64_t{1} << 40).Zeros(8).bytes(),
       "key \"arr\": array length 1099511627776 exceeds"},
      {"array past EOF",
       GgufBuilder().Header(0, 1).Str("arr").U32(GgufBuilder::kArray).U32(GgufBuilder::kU64)
           .U64(100).Zeros(8).bytes(),
       "array length 100 runs past the end"},
      {"unknown value type", GgufBuilder().Header(0, 1).Str("k").U32(13).U32(0).bytes(),
       "key \"k\": unknown value type 13"},
      {"unknown array type",
       GgufBuilder().Header(0, 1).Str("k").U32(GgufBuilder::kArray).U32(77).U64(1).Zeros(8)
           .bytes(),
       "unknown array element type 77"},
      {"deep nesting",
       [] {
         GgufBuilder b;
         b.Header(0, 1).Str("deep").U32(GgufBuilder::kArray);
         for (int i = 0; i < 6; ++i) b.U32(GgufBuilder::kArray).U64(1);
         return b.U32(GgufBuilder::kU8).U64(1).U8(1).bytes();
       }()
           .substr(0),
       "nested deeper"},
      {"bad bool", GgufBuilder().Header(0, 1).Str("b").U32(GgufBuilder::kBool).U8(2).bytes(),
       "bool value 2"},
      {"duplicate key",
       GgufBuilder().Header(0, 2).KvU32("k", 1).KvU32("k", 2).bytes(), "\"k\" appears twice"},
      {"bad alignment",
       GgufBuilder().Header(0, 1).KvU32("general.alignment", 3).bytes(), "general.alignment"},
      {"alignment not int",
       GgufBuilder().Header(0, 1).KvStr("general.alignment", "32").bytes(), "general.alignment"},
      {"unknown ggml type",
       GgufBuilder().Header(1, 0).TensorInfo("w", {32}, 99, 0).Align().Zeros(64).bytes(),
       "tensor \"w\": unknown ggml type 99"},
      {"too many dims",
       GgufBuilder().Header(1, 0).TensorInfo("w", {1, 1, 1, 1, 1}, 0, 0).Align().Zeros(64).bytes(),
       "tensor \"w\": 5 dimensions"},
      {"numel overflow",
       GgufBuilder().Header(1, 0).TensorInfo("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0)
           .Align().Zeros(64).bytes(),
       "overflows"},
      {"row not whole blocks",
       GgufBuilder().Header(1, 0).TensorInfo("w", {33, 2}, 8, 0).Align().Zeros(128).bytes(),
       "row length 33 is not a multiple of the Q8_0 block size 32"},
      {"unaligned offset",
       GgufBuilder().Header(1, 0).TensorInfo("w", {4}, 0, 4).Align().Zeros(64).bytes(),
       "data offset 4 is not a multiple"},
      {"data past EOF",
       GgufBuilder().Header(1, 0).TensorInfo("w", {64}, 0, 0).Align().Zeros(255).bytes(),
       "tensor \"w\": data [0, +256)"},
      {"offset overflow",
       GgufBuilder().Header(1, 0).TensorInfo("w", {8}, 0, ~uint64_t{0} - 31).Align().Zeros(64)
           .bytes(),
       "runs past the end of the file"},
      {"duplicate tensor",
       GgufBuilder().Header(2, 0).TensorInfo("w", {8}, 0, 0).TensorInfo("w", {8}, 0, 32).Align()
           .Zeros(64).bytes(),
       "tensor \"w\": name appears twice"},
  };
  for (const BadCase& c : cases) {
    absl::Status s = GgufFile::Parse(testing::AsBytes(c.bytes), "bad.gguf").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("bad.gguf")) << c.name;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.name << ": " << s.message();
  }
}

TEST(GgufTest, ParsesHandBuiltFile) {
  GgufBuilder b;
  b.Header(2, 2, 2).KvStr("general.architecture", "llama").KvU32("general.alignment", 16);
  b.TensorInfo("a", {4}, 0, 0).TensorInfo("scalar", {}, 0, 16);
  b.Align(16);
  const float a[4] = {1, 2, 3, 4};
  const float s = 9;
  b.Raw(std::string_view(reinterpret_cast<const char*>(a), 16));
  b.Raw(std::string_view(reinterpret_cast<const char*>(&s), 4));
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "v2.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensor* t = (*f)->FindTensor("scalar");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->dims.empty());
  EXPECT_EQ(t->numel(), 1);
  std::vector<float> out(1);
  ASSERT_TRUE(DequantizeToF32(*t, out).ok());
  EXPECT_EQ(out[0], 9.0f);
}

TEST(GgufTest, OpenErrorsNamePath) {
  absl::Status s = GgufFile::Open("/nonexistent/model.gguf").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent/model.gguf"));
  TempDir dir;
  WriteFile(dir.File("x.gguf"), "not a gguf file at all");
  s = GgufFile::Open(dir.File("x.gguf")).status();
  EXPECT_THAT(s.message(), HasSubstr(dir.File("x.gguf")));
  EXPECT_THAT(s.message(), HasSubstr("bad magic"));
}

TEST(GgufTest, UnsupportedQuantTypeParsesButDoesNotDequantize) {
  GgufBuilder b;
  b.Header(1, 0).TensorInfo("blk.0.w", {32, 2}, static_cast<uint32_t>(GgmlType::kQ5_0), 0);
  b.Align().Zeros(44);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "q5.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensor& t = (*f)->tensors()[0];
  EXPECT_EQ(t.type, GgmlType::kQ5_0);
  EXPECT_EQ(t.data.size(), 44u);
  std::vector<float> out(64);
  absl::Status s = DequantizeToF32(t, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("\"blk.0.w\""));
  EXPECT_THAT(s.message(), HasSubstr("Q5_0"));
  EXPECT_THAT(s.message(), HasSubstr("cannot be dequantized"));
}

}  // namespace
}  // namespace linearize::io
