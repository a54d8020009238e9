#include "common/io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/unit/io/test_util.h"

namespace linearize::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::AsBytes;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

// A safetensors file from a header text and a data area.
std::string MakeFile(std::string_view header, std::string_view data = "") {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out.append(header);
  out.append(data);
  return out;
}

absl::Status ParseStatus(const std::string& file) {
  return SafetensorsFile::Parse(AsBytes(file), "bad.safetensors").status();
}

// Tensors of every dtype, written by the tests below.
struct Sample {
  std::vector<float> f32 = {0.0f, 0.5f, -1.25f, 3.0f, 1e-3f, -7.0f};
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x4049, 0x0000};  // 1, -2, 3.140625, 0
  std::vector<uint16_t> f16 = {0x3c00, 0xc400};                   // 1, -4
  std::vector<double> f64 = {2.5};
  std::vector<int64_t> i64 = {-7};
  std::vector<int32_t> i32 = {1, 2, -3};
  std::vector<int16_t> i16 = {-300, 300};
  std::vector<int8_t> i8 = {-5};
  std::vector<uint8_t> u8;  // empty tensor
  std::vector<uint8_t> flags = {1, 0};

  std::vector<TensorToWrite> Tensors() const {
    return {
        {"a.f32", DType::kF32, {2, 3}, AsBytes(f32)},
        {"b.bf16", DType::kBF16, {4}, AsBytes(bf16)},
        {"c.i64", DType::kI64, {}, AsBytes(i64)},
        {"d.bool", DType::kBool, {2}, AsBytes(flags)},
        {"e.u8", DType::kU8, {0, 5}, AsBytes(u8)},
        {"f.i32", DType::kI32, {3}, AsBytes(i32)},
        {"g.f16", DType::kF16, {1, 2}, AsBytes(f16)},
        {"h.f64", DType::kF64, {1}, AsBytes(f64)},
        {"i.i16", DType::kI16, {2}, AsBytes(i16)},
        {"j.i8", DType::kI8, {1, 1, 1}, AsBytes(i8)},
    };
  }
};

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  TempDir dir;
  Sample s;
  std::vector<TensorToWrite> tensors = s.Tensors();
  const std::string path = dir.File("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}, {"note", "x"}}).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), tensors.size());
  EXPECT_EQ((*f)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  const std::byte* base = nullptr;
  for (const TensorToWrite& w : tensors) {
    const TensorView* t = (*f)->Find(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->dtype, w.dtype) << w.name;
    EXPECT_EQ(t->shape, w.shape) << w.name;
    ASSERT_EQ(t->data.size(), w.data.size()) << w.name;
    EXPECT_TRUE(std::equal(t->data.begin(), t->data.end(), w.data.begin())) << w.name;
    if (base == nullptr || (!t->data.empty() && t->data.data() < base)) base = t->data.data();
  }
  EXPECT_EQ((*f)->Find("a.f32")->numel(), 6);
  EXPECT_EQ((*f)->Find("c.i64")->numel(), 1);
  EXPECT_EQ((*f)->Find("e.u8")->numel(), 0);
  EXPECT_EQ((*f)->Find("missing"), nullptr);

  // Header padded to 8 bytes, and every tensor naturally aligned in the file.
  const std::string raw = ReadFile(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(raw[8 + header_len - 1] == ' ' || raw[8 + header_len - 1] == '}', true);
  for (const TensorView& t : (*f)->tensors()) {
    EXPECT_EQ(static_cast<size_t>(t.data.data() - base) % DTypeSize(t.dtype), 0u) << t.name;
  }
  // No temporary files are left beside the output.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(SafetensorsTest, WriteReplacesExistingFile) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteFile(path, "old contents");
  std::vector<float> v = {1.0f};
  std::vector<TensorToWrite> tensors = {{"v", DType::kF32, {1}, AsBytes(v)}};
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->metadata().empty());
}

TEST(SafetensorsTest, WriteRejectsBadTensorsAndKeepsOldFile) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteFile(path, "old contents");
  std::vector<float> v = {1.0f, 2.0f};
  {
    std::vector<TensorToWrite> tensors = {{"v", DType::kF32, {3}, AsBytes(v)}};
    absl::Status s = WriteSafetensors(path, tensors);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(path));
    EXPECT_THAT(s.message(), HasSubstr("\"v\""));
  }
  {
    std::vector<TensorToWrite> tensors = {{"v", DType::kF32, {2}, AsBytes(v)},
                                          {"v", DType::kF32, {2}, AsBytes(v)}};
    absl::Status s = WriteSafetensors(path, tensors);
    EXPECT_THAT(s.message(), HasSubstr("twice"));
  }
  {
    std::vector<TensorToWrite> tensors = {{"__metadata__", DType::kF32, {2}, AsBytes(v)}};
    EXPECT_FALSE(WriteSafetensors(path, tensors).ok());
  }
  EXPECT_EQ(ReadFile(path), "old contents");
  absl::Status s = WriteSafetensors(dir.File("no/such/dir/x.safetensors"), {});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("no/such/dir/x.safetensors"));
}

// The Python `safetensors` package reads what we write, and we read what it
// writes.
TEST(SafetensorsTest, InteroperatesWithPythonPackage) {
  const std::string python = std::string(LINEARIZE_SOURCE_DIR) + "/.venv/bin/python";
  if (!std::filesystem::exists(python)) GTEST_SKIP() << "no project venv at " << python;
  TempDir dir;
  Sample s;
  std::vector<TensorToWrite> tensors = s.Tensors();
  const std::string ours = dir.File("ours.safetensors");
  const std::string theirs = dir.File("theirs.safetensors");
  ASSERT_TRUE(WriteSafetensors(ours, tensors, {{"format", "pt"}}).ok());
  WriteFile(dir.File("check.py"), R"py(
import json, sys
import torch
from safetensors import safe_open
from safetensors.torch import save_file
res = {}
with safe_open(sys.argv[1], framework="pt") as f:
    res["__metadata__"] = f.metadata()
    for k in f.keys():
        t = f.get_tensor(k)
        res[k] = [str(t.dtype), list(t.shape), t.double().flatten().tolist()]
print(json.dumps(res))
save_file({"w": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3) / 4,
           "b": torch.tensor([1, -2, 3], dtype=torch.int64),
           "s": torch.tensor(2.5)}, sys.argv[2], metadata={"format": "pt"})
)py");
  const std::string cmd = python + " " + dir.File("check.py") + " " + ours + " " + theirs;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  ASSERT_EQ(::pclose(pipe), 0) << out;

  nlohmann::json got = nlohmann::json::parse(out);
  EXPECT_EQ(got["__metadata__"], nlohmann::json({{"format", "pt"}}));
  auto expect = [&](const std::string& name, const std::string& dtype,
                    const std::vector<int64_t>& shape, const std::vector<double>& values) {
    ASSERT_TRUE(got.contains(name)) << name;
    EXPECT_EQ(got[name][0], dtype) << name;
    EXPECT_EQ(got[name][1].get<std::vector<int64_t>>(), shape) << name;
    EXPECT_EQ(got[name][2].get<std::vector<double>>(), values) << name;
  };
  expect("a.f32", "torch.float32", {2, 3}, {0.0, 0.5, -1.25, 3.0, double(1e-3f), -7.0});
  expect("b.bf16", "torch.bfloat16", {4}, {1.0, -2.0, 3.140625, 0.0});
  expect("c.i64", "torch.int64", {}, {-7});
  expect("d.bool", "torch.bool", {2}, {1, 0});
  expect("e.u8", "torch.uint8", {0, 5}, {});
  expect("f.i32", "torch.int32", {3}, {1, 2, -3});
  expect("g.f16", "torch.float16", {1, 2}, {1.0, -4.0});
  expect("h.f64", "torch.float64", {1}, {2.5});
  expect("i.i16", "torch.int16", {2}, {-300, 300});
  expect("j.i8", "torch.int8", {1, 1, 1}, {-5});

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(theirs);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  const TensorView* w = (*f)->Find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kBF16);
  EXPECT_THAT(w->shape, ElementsAre(2, 3));
  std::vector<uint16_t> w_bits(6);
  std::memcpy(w_bits.data(), w->data.data(), 12);
  EXPECT_THAT(w_bits, ElementsAre(0x0000, 0x3e80, 0x3f00, 0x3f40, 0x3f80, 0x3fa0));
  const TensorView* b = (*f)->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kI64);
  std::vector<int64_t> b_vals(3);
  std::memcpy(b_vals.data(), b->data.data(), 24);
  EXPECT_THAT(b_vals, ElementsAre(1, -2, 3));
  const TensorView* sc = (*f)->Find("s");
  ASSERT_NE(sc, nullptr);
  EXPECT_TRUE(sc->shape.empty());
  float sv = 0;
  std::memcpy(&sv, sc->data.data(), 4);
  EXPECT_EQ(sv, 2.5f);
}

TEST(SafetensorsTest, ParsesHandWrittenHeader) {
  std::string data(12, '\0');
  const std::string file = MakeFile(
      R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
      R"("y":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}  )",
      data);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Parse(AsBytes(file), "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->Find("x")->data.data() - (*f)->Find("y")->data.data(), 4);
  EXPECT_EQ((*f)->metadata().at("k"), "v");
}

struct BadCase {
  std::string name;
  std::string file;
  std::string message;
};

std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return absl::StrCat("\"", name, "\":{\"dtype\":\"", dtype, "\",\"shape\":", shape,
                      ",\"data_offsets\":", offsets, "}");
}

TEST(SafetensorsTest, RejectsBadFilesNamingFileAndProblem) {
  const std::string data(16, '\0');
  std::string huge_len(8, '\xff');
  const std::vector<BadCase> cases = {
      {"too short", "abc", "too short"},
      {"header past EOF", huge_len + "{}", "runs past the end of the file"},
      {"header length one too long", MakeFile("{}").substr(0, 9), "runs past the end"},
      {"bad json", MakeFile("{\"x\":"), "not valid JSON"},
      {"not an object", MakeFile("[1,2]"), "not a JSON object"},
      {"unknown dtype", MakeFile("{" + Entry("t", "F8_E4M3", "[2]", "[0,2]") + "}", data),
       "unknown dtype \"F8_E4M3\""},
      {"offsets out of range", MakeFile("{" + Entry("t", "F32", "[8]", "[0,32]") + "}", data),
       "exceed the data area of 16 bytes"},
      {"end before begin", MakeFile("{" + Entry("t", "F32", "[0]", "[8,4]") + "}", data),
       "end before they begin"},
      {"shape/size mismatch", MakeFile("{" + Entry("t", "F32", "[3]", "[0,8]") + "}", data),
       "need 12"},
      {"overlap",
       MakeFile("{" + Entry("t", "F32", "[2]", "[0,8]") + "," + Entry("u", "F32", "[2]", "[4,12]") +
                    "}",
                data),
       "overlap"},
      {"duplicate name",
       MakeFile("{" + Entry("t", "F32", "[1]", "[0,4]") + "," + Entry("t", "F32", "[1]", "[4,8]") +
                    "}",
                data),
       "\"t\" appears twice"},
      {"negative dim", MakeFile("{" + Entry("t", "F32", "[-1]", "[0,4]") + "}", data),
       "not a non-negative integer"},
      {"float dim", MakeFile("{" + Entry("t", "F32", "[1.0]", "[0,4]") + "}", data),
       "not a non-negative integer"},
      {"numel overflow",
       MakeFile("{" + Entry("t", "F32", "[4294967296,4294967296]", "[0,4]") + "}", data),
       "more elements than fit"},
      {"byte size overflow",
       MakeFile("{" + Entry("t", "F64", "[4611686018427387904]", "[0,4]") + "}", data),
       "overflows"},
      {"missing dtype", MakeFile(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", data),
       "missing string \"dtype\""},
      {"missing offsets", MakeFile(R"({"t":{"dtype":"F32","shape":[1]}})", data),
       "data_offsets"},
      {"entry not object", MakeFile(R"({"t":7})", data), "not an object"},
      {"metadata not strings", MakeFile(R"({"__metadata__":{"a":1}})", data),
       "\"__metadata__\" value of \"a\" is not a string"},
  };
  for (const BadCase& c : cases) {
    absl::Status s = ParseStatus(c.file);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(s.message(), HasSubstr("bad.safetensors")) << c.name;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.name << ": " << s.message();
  }
}

TEST(SafetensorsTest, TruncatedFileOnDiskFails) {
  TempDir dir;
  Sample s;
  std::vector<TensorToWrite> tensors = s.Tensors();
  const std::string path = dir.File("t.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  const std::string full = ReadFile(path);
  // Every proper prefix must be rejected (the last tensor ends at EOF).
  for (size_t len = 0; len < full.size(); ++len) {
    absl::Status st = SafetensorsFile::Parse(AsBytes(std::string_view(full).substr(0, len)),
                                             "cut.safetensors").status();
    ASSERT_FALSE(st.ok()) << len;
    EXPECT_THAT(st.message(), HasSubstr("cut.safetensors"));
  }
  WriteFile(path, full.substr(0, full.size() - 1));
  absl::Status st = SafetensorsFile::Open(path).status();
  EXPECT_THAT(st.message(), HasSubstr(path));
  EXPECT_THAT(st.message(), HasSubstr("exceed the data area"));
}

TEST(SafetensorsCheckpointTest, OpensSingleFile) {
  TempDir dir;
  std::vector<float> v = {1, 2, 3};
  std::vector<TensorToWrite> tensors = {{"a", DType::kF32, {3}, AsBytes(v)},
                                        {"b", DType::kF32, {1}, AsBytes(v).first(4)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), tensors).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT((*ckpt)->names(), ElementsAre("a", "b"));
  ASSERT_NE((*ckpt)->Find("a"), nullptr);
  EXPECT_EQ((*ckpt)->Find("a")->numel(), 3);
  EXPECT_EQ((*ckpt)->Find("c"), nullptr);
}

TEST(SafetensorsCheckpointTest, OpensShardsFromIndex) {
  TempDir dir;
  std::vector<float> a = {1, 2}, b = {3}, c = {4, 5, 6};
  std::vector<TensorToWrite> shard1 = {{"a", DType::kF32, {2}, AsBytes(a)},
                                       {"b", DType::kF32, {1}, AsBytes(b)}};
  std::vector<TensorToWrite> shard2 = {{"c", DType::kF32, {3}, AsBytes(c)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00001-of-00002.safetensors"), shard1).ok());
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), shard2).ok());
  WriteFile(dir.File("model.safetensors.index.json"),
            R"({"metadata":{"total_size":24},"weight_map":{)"
            R"("a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
            R"("c":"model-00002-of-00002.safetensors"}})");
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT((*ckpt)->names(), ElementsAre("a", "b", "c"));
  const TensorView* t = (*ckpt)->Find("c");
  ASSERT_NE(t, nullptr);
  float x = 0;
  std::memcpy(&x, t->data.data() + 8, 4);
  EXPECT_EQ(x, 6.0f);
  std::memcpy(&x, (*ckpt)->Find("b")->data.data(), 4);
  EXPECT_EQ(x, 3.0f);
}

TEST(SafetensorsCheckpointTest, IndexErrorsNameTheProblem) {
  TempDir dir;
  std::vector<float> a = {1, 2};
  std::vector<TensorToWrite> shard = {{"a", DType::kF32, {2}, AsBytes(a)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("s1.safetensors"), shard).ok());
  const std::string index = dir.File("model.safetensors.index.json");

  WriteFile(index, R"({"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}})");
  absl::Status s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("\"zz\""));
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors.index.json"));

  WriteFile(index, R"({"weight_map":{"a":"missing.safetensors"}})");
  s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("missing.safetensors"));

  WriteFile(index, R"({"weight_map":{"a":"../s1.safetensors"}})");
  s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_THAT(s.message(), HasSubstr("outside the checkpoint directory"));

  WriteFile(index, R"({"weight_map":[1]})");
  s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_THAT(s.message(), HasSubstr("weight_map"));

  WriteFile(index, "{oops");
  s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_THAT(s.message(), HasSubstr("not a JSON object"));
}

TEST(SafetensorsCheckpointTest, EmptyDirectoryIsNotFound) {
  TempDir dir;
  absl::Status s = SafetensorsCheckpoint::Open(dir.path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(dir.path()));
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors"));
}

}  // namespace
}  // namespace linearize::io
