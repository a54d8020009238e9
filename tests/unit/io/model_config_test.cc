#include "common/io/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/io/gguf.h"
#include "tests/unit/io/test_util.h"

namespace linearize::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::GgufBuilder;

// config.json of HuggingFaceTB/SmolLM2-135M-Instruct.
constexpr char kSmolLM2[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
  "is_llama_config": true, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true,
  "vocab_size": 49152})";

absl::StatusOr<ModelConfig> Parse(std::string_view json) {
  return ParseHfConfig(json, "config.json");
}

TEST(HfConfigTest, SmolLM2) {
  absl::StatusOr<ModelConfig> c = Parse(kSmolLM2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_hidden_layers, 30);
  EXPECT_EQ(c->num_attention_heads, 9);
  EXPECT_EQ(c->num_key_value_heads, 3);
  EXPECT_EQ(c->head_dim, 64);  // 576 / 9
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 100000.0);
  EXPECT_EQ(c->rope_scaling.type, "");
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->sliding_window.has_value());
  EXPECT_THAT(c->bos_token_ids, ElementsAre(1));
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(HfConfigTest, Llama3RopeScalingAndEosList) {
  absl::StatusOr<ModelConfig> c = Parse(R"({
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_size": 2048, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "vocab_size": 128256, "head_dim": 64})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_THAT(c->bos_token_ids, ElementsAre(128000));
}

TEST(HfConfigTest, OldTypeSpellingAndTransformers5RopeParameters) {
  absl::StatusOr<ModelConfig> c = Parse(R"({"model_type": "llama", "vocab_size": 10,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "rope_scaling": {"type": "linear", "factor": 2.0}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_EQ(c->rope_scaling.factor, 2.0);
  EXPECT_EQ(c->num_key_value_heads, 4);  // defaults to the head count
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_TRUE(c->bos_token_ids.empty());

  c = Parse(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "dtype": "float32", "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3",
    "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->torch_dtype, "float32");

  c = Parse(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "rope_parameters": {"rope_theta": 1000.0, "rope_type": "default"}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 1000.0);
  EXPECT_EQ(c->rope_scaling.type, "");
}

TEST(HfConfigTest, MistralWithHeadDimAndSlidingWindow) {
  absl::StatusOr<ModelConfig> c = Parse(R"({"architectures": ["MistralForCausalLM"],
    "hidden_size": 5120, "head_dim": 128, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8,
    "vocab_size": 131072, "rope_theta": 1000000.0, "sliding_window": 4096,
    "max_position_embeddings": 1024000, "bos_token_id": 1, "eos_token_id": 2})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "mistral");
  EXPECT_EQ(c->head_dim, 128);  // not 5120 / 32
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);

  c = Parse(R"({"model_type": "mistral", "hidden_size": 64, "head_dim": null,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
    "vocab_size": 10, "sliding_window": null})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_FALSE(c->sliding_window.has_value());
}

TEST(HfConfigTest, Qwen2HasAttentionBias) {
  absl::StatusOr<ModelConfig> c = Parse(R"({"architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "vocab_size": 151936, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
    "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
    "bos_token_id": 151643, "eos_token_id": 151645, "max_position_embeddings": 32768})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_FALSE(c->sliding_window.has_value());  // use_sliding_window is false
}

TEST(HfConfigTest, ErrorsNameFileAndField) {
  const std::string base = R"("vocab_size": 10, "hidden_size": 64, "intermediate_size": 128,
                              "num_hidden_layers": 2, "num_attention_heads": 4)";
  struct Case {
    std::string json;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{\"model_type\": \"gemma\", " + base + "}",
       "unsupported architecture \"gemma\" (supported: llama, mistral, qwen2)"},
      {"{\"architectures\": [\"GPT2LMHeadModel\"], " + base + "}",
       "unsupported architecture \"GPT2LMHeadModel\""},
      {"{" + base + "}", "required field \"model_type\" is missing"},
      {R"({"model_type": "llama", "vocab_size": 10})", "\"hidden_size\" is missing"},
      {"{\"model_type\": \"llama\", \"hidden_size\": \"64\", \"vocab_size\": 10}",
       "field \"hidden_size\" must be an integer"},
      {"{\"model_type\": \"llama\", " + base + ", \"num_key_value_heads\": 3}",
       "not a multiple of num_key_value_heads"},
      {"{\"model_type\": \"llama\", " + base + ", \"num_key_value_heads\": 0}",
       "num_key_value_heads = 0"},
      {"{\"model_type\": \"llama\", " + base + ", \"rms_norm_eps\": \"x\"}",
       "\"rms_norm_eps\" must be a number"},
      {"{\"model_type\": \"llama\", " + base + ", \"rms_norm_eps\": -1}", "rms_norm_eps"},
      {"{\"model_type\": \"llama\", " + base + ", \"tie_word_embeddings\": 1}",
       "\"tie_word_embeddings\" must be true or false"},
      {"{\"model_type\": \"llama\", " + base + ", \"eos_token_id\": [1, \"x\"]}",
       "\"eos_token_id\" must be an integer or a list"},
      {"{\"model_type\": \"llama\", " + base + ", \"rope_scaling\": {\"rope_type\": \"yarn\", "
                                               "\"factor\": 4}}",
       "rope_scaling type \"yarn\" is not supported"},
      {"{\"model_type\": \"llama\", " + base + ", \"rope_scaling\": {\"rope_type\": \"linear\"}}",
       "\"rope_scaling.factor\" is missing"},
      {"{\"model_type\": \"llama\", " + base + ", \"rope_scaling\": 3}",
       "\"rope_scaling\" must be an object"},
      {"{\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 66, "
       "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
       "hidden_size = 66 is not a multiple of num_attention_heads"},
      {"{\"model_type\": \"llama\", " + base + ", \"head_dim\": 15}", "head_dim = 15"},
      {"{\"model_type\": \"llama\", " + base + ", \"hidden_size\": 1e3}", "hidden_size"},
      {"{\"model_type\": ", "not valid JSON"},
      {"[]", "not a JSON object"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ModelConfig> got = Parse(c.json);
    ASSERT_FALSE(got.ok()) << c.json;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(got.status().message(), HasSubstr("config.json")) << c.json;
    EXPECT_THAT(got.status().message(), HasSubstr(c.message)) << got.status();
  }
}

TEST(HfConfigTest, ReadsFile) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("config.json"), kSmolLM2);
  absl::StatusOr<ModelConfig> c = ReadHfConfig(dir.File("config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 576);
  absl::Status s = ReadHfConfig(dir.File("missing.json")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("missing.json"));
}

TEST(HfConfigTest, SupportedArchitectures) {
  EXPECT_THAT(SupportedArchitectures(), ElementsAre("llama", "mistral", "qwen2"));
}

// A metadata-only GGUF for `arch` (plus an output.weight tensor if untied).
GgufBuilder ConfigGguf(std::string_view arch, bool with_output, bool with_kv_heads = true) {
  const std::string p(arch);
  GgufBuilder b;
  b.Header(with_output ? 1 : 0, with_kv_heads ? 12 : 11);
  b.KvStr("general.architecture", arch);
  b.KvU32(p + ".block_count", 2).KvU32(p + ".embedding_length", 64);
  b.KvU32(p + ".feed_forward_length", 128).KvU32(p + ".attention.head_count", 4);
  if (with_kv_heads) b.KvU32(p + ".attention.head_count_kv", 2);
  b.KvF32(p + ".rope.freq_base", 1000000.0f).KvF32(p + ".attention.layer_norm_rms_epsilon", 1e-6f);
  b.KvU32(p + ".context_length", 4096).KvU32("tokenizer.ggml.bos_token_id", 7);
  b.KvU32("tokenizer.ggml.eos_token_id", 8);
  b.KvStrArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  if (with_output) b.TensorInfo("output.weight", {64, 3}, 0, 0);
  b.Align();
  if (with_output) b.Zeros(64 * 3 * 4);
  return b;
}

TEST(GgufConfigTest, Qwen2UntiedWithBias) {
  GgufBuilder b = ConfigGguf("qwen2", /*with_output=*/true);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "qwen.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<ModelConfig> c = ModelConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 128);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->vocab_size, 3);  // from tokenizer.ggml.tokens
  EXPECT_EQ(c->rope_theta, 1000000.0);
  EXPECT_EQ(c->rms_norm_eps, static_cast<double>(1e-6f));
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_THAT(c->bos_token_ids, ElementsAre(7));
  EXPECT_THAT(c->eos_token_ids, ElementsAre(8));
}

TEST(GgufConfigTest, LlamaTiedDefaultsKvHeads) {
  GgufBuilder b = ConfigGguf("llama", /*with_output=*/false, /*with_kv_heads=*/false);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "llama.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<ModelConfig> c = ModelConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->num_key_value_heads, 4);
}

TEST(GgufConfigTest, ErrorsNameFileAndKey) {
  {
    GgufBuilder b;
    b.Header(0, 1).KvStr("general.architecture", "gpt2");
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "gpt2.gguf");
    ASSERT_TRUE(f.ok()) << f.status();
    absl::Status s = ModelConfigFromGguf(**f).status();
    EXPECT_THAT(s.message(), HasSubstr("gpt2.gguf"));
    EXPECT_THAT(s.message(), HasSubstr("unsupported architecture \"gpt2\" (supported: llama"));
  }
  {
    GgufBuilder b;
    b.Header(0, 2).KvStr("general.architecture", "llama").KvU32("llama.block_count", 2);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "partial.gguf");
    ASSERT_TRUE(f.ok()) << f.status();
    absl::Status s = ModelConfigFromGguf(**f).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr("partial.gguf"));
    EXPECT_THAT(s.message(), HasSubstr("llama.embedding_length"));
  }
  {
    GgufBuilder b;
    b.Header(0, 1).KvU32("general.architecture", 1);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Parse(b.span(), "x.gguf");
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_THAT(ModelConfigFromGguf(**f).status().message(),
                HasSubstr("\"general.architecture\" is an unsigned integer"));
  }
}

}  // namespace
}  // namespace linearize::io
