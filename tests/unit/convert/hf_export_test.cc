// The Hugging Face view of GGUF models: config.json written for a
// ModelConfig reads back as the same config; the llama3 RoPE schedule is
// recovered from llama.cpp's rope_freqs divisors; tokenizer.json written
// from GGUF tokenizer metadata encodes exactly as Hugging Face `tokenizers`
// does with the model's own tokenizer.json (the tokenizer fixtures'
// expected ids) and as our GGUF tokenizer does; SentencePiece-style ones
// become a tokenizer.model that encodes as the sentencepiece package does.
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "common/convert/hf_tokenizer.h"
#include "common/io/gguf.h"
#include "common/io/hf_config_writer.h"
#include "common/io/model_config.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::Slurp;
using testing::TempDir;
using testing::WriteText;

const std::string kFixtures = LINEARIZE_FIXTURES_DIR;

void ExpectSameConfig(const io::ModelConfig& a, const io::ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_FLOAT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_FLOAT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  if (!a.rope_scaling.type.empty()) {
    EXPECT_DOUBLE_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  }
  if (a.rope_scaling.type == "llama3") {
    EXPECT_DOUBLE_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
    EXPECT_DOUBLE_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
    EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
              b.rope_scaling.original_max_position_embeddings);
  }
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.bos_token_ids, b.bos_token_ids);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
}

TEST(HfConfig, WrittenConfigReadsBackAsTheSameModelConfig) {
  for (const char* variant : {"llama", "llama3_scaled", "mistral", "qwen2"}) {
    SCOPED_TRACE(variant);
    auto original = io::ReadHfConfig(kFixtures + "/models/" + variant + "/config.json");
    ASSERT_TRUE(original.ok()) << original.status();
    const nlohmann::json j = io::HfConfigJson(*original, "float32");
    EXPECT_EQ(j["torch_dtype"], "float32");
    auto back = io::ParseHfConfig(j.dump(), "written.json");
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << j.dump(2);
    ExpectSameConfig(*back, *original);
  }
}

// llama.cpp's divisors for a llama3 schedule (convert_hf_to_gguf.py).
std::vector<float> Llama3Factors(double theta, int64_t dim, double factor, double low, double high,
                                 double old) {
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(theta, static_cast<double>(i) / static_cast<double>(dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < old / high) {
      out.push_back(1);
    } else if (wavelen > old / low) {
      out.push_back(static_cast<float>(factor));
    } else {
      const double smooth = (old / wavelen - low) / (high - low);
      out.push_back(static_cast<float>(1 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

TEST(HfConfig, RecoversTheLlama3RopeScheduleFromRopeFreqs) {
  // Llama 3.1 8B: theta 500000, head_dim 128, factor 8, 1/4, 8192.
  auto r = io::Llama3ScalingFromFactors(Llama3Factors(500000, 128, 8, 1, 4, 8192), 500000, 128);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, "llama3");
  EXPECT_EQ(r->factor, 8);
  EXPECT_EQ(r->low_freq_factor, 1);
  EXPECT_EQ(r->high_freq_factor, 4);
  EXPECT_EQ(r->original_max_position_embeddings, 8192);
  // Llama 3.2: factor 32.
  r = io::Llama3ScalingFromFactors(Llama3Factors(500000, 64, 32, 1, 4, 8192), 500000, 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->factor, 32);
  EXPECT_EQ(r->original_max_position_embeddings, 8192);

  // Unusual values: some equivalent schedule that reproduces every divisor.
  const std::vector<float> odd = Llama3Factors(10000, 64, 6, 1.5, 3.7, 3000);
  r = io::Llama3ScalingFromFactors(odd, 10000, 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Llama3Factors(10000, 64, r->factor, r->low_freq_factor, r->high_freq_factor,
                          static_cast<double>(r->original_max_position_embeddings))
                .size(),
            odd.size());
  const std::vector<float> again =
      Llama3Factors(10000, 64, r->factor, r->low_freq_factor, r->high_freq_factor,
                    static_cast<double>(r->original_max_position_embeddings));
  for (size_t i = 0; i < odd.size(); ++i) EXPECT_NEAR(again[i], odd[i], 1e-5 * odd[i]) << i;

  // No scaling at all, and divisors no llama3 schedule makes.
  r = io::Llama3ScalingFromFactors(std::vector<float>(32, 1.0f), 10000, 64);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type, "");
  std::vector<float> bad(32, 1.0f);
  bad[3] = 5;  // a low factor among ones, then ones again
  r = io::Llama3ScalingFromFactors(bad, 10000, 64);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("rope_freqs"), std::string::npos) << r.status();
  r = io::Llama3ScalingFromFactors(std::vector<float>(5, 1.0f), 10000, 64);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HfConfig, GgufFixtureGivesTheConfigItWasMadeFrom) {
  auto gguf = io::GgufFile::Open(kFixtures + "/models/llama3_scaled.gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto j = io::HfConfigFromGguf(**gguf);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ((*j)["rms_norm_eps"], 1e-05);  // 9.99999974738e-06 as GGUF stores it
  EXPECT_EQ((*j)["rope_scaling"]["rope_type"], "llama3");
  auto written = io::ParseHfConfig(j->dump(), "written.json");
  ASSERT_TRUE(written.ok()) << written.status();
  auto original = io::ReadHfConfig(kFixtures + "/models/llama3_scaled/config.json");
  ASSERT_TRUE(original.ok());
  // The GGUF keeps one EOS id of the two in config.json.
  original->eos_token_ids = {1509};
  ExpectSameConfig(*written, *original);
}

// Our tokenizer from the written tokenizer.json (+ tokenizer_config.json)
// gives the ids Hugging Face `tokenizers` gives with the model's real
// tokenizer.json, and the ids of our GGUF tokenizer.
void ExpectTokenizerMatches(const std::string& name, bool nfc_fixture) {
  SCOPED_TRACE(name);
  auto gguf = io::GgufFile::Open(kFixtures + "/tokenizer/" + name + "/tokenizer.gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto files = HfTokenizerFromGguf(**gguf, 4096);
  ASSERT_TRUE(files.ok()) << files.status();
  TempDir dir;
  WriteText(dir.path() + "/tokenizer.json", files->tokenizer_json);
  WriteText(dir.path() + "/tokenizer_config.json", files->tokenizer_config_json);
  auto written = tokenizer::LoadTokenizerJson(dir.path() + "/tokenizer.json");
  ASSERT_TRUE(written.ok()) << written.status();
  auto from_gguf = tokenizer::TokenizerFromGguf(**gguf);
  ASSERT_TRUE(from_gguf.ok());
  EXPECT_EQ((*written)->vocab_size(), (*from_gguf)->vocab_size());
  EXPECT_EQ((*written)->bos_id(), (*from_gguf)->bos_id());
  EXPECT_EQ((*written)->eos_id(), (*from_gguf)->eos_id());
  const nlohmann::json expected =
      nlohmann::json::parse(Slurp(kFixtures + "/tokenizer/" + name + "/expected.json"));
  int n = 0;
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ((*written)->Encode(text), c["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ((*written)->Encode(text, true), c["ids_with_special"].get<std::vector<int32_t>>())
        << text;
    EXPECT_EQ((*written)->Encode(text, true), (*from_gguf)->Encode(text, true)) << text;
    if (!nfc_fixture) {
      EXPECT_EQ((*written)->Decode(c["ids"].get<std::vector<int32_t>>()), text);
    }
    ++n;
  }
  EXPECT_GT(n, 10);
  const nlohmann::json config = nlohmann::json::parse(files->tokenizer_config_json);
  EXPECT_EQ(config["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_TRUE(config["chat_template"].is_string() || !(*gguf)->Find("tokenizer.chat_template"));
}

TEST(HfTokenizer, Llama3StyleGgufTokenizerRoundTrips) { ExpectTokenizerMatches("llama3", false); }
TEST(HfTokenizer, Qwen2StyleGgufTokenizerRoundTrips) { ExpectTokenizerMatches("qwen2", true); }

// A SentencePiece-style GGUF tokenizer becomes a tokenizer.model that
// libsentencepiece loads and that encodes as the sentencepiece Python
// package does with the original model (the fixture's expected ids).
TEST(HfTokenizer, SentencePieceGgufTokenizerBecomesATokenizerModel) {
  auto gguf = io::GgufFile::Open(kFixtures + "/tokenizer/sentencepiece/tokenizer.gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto files = HfTokenizerFromGguf(**gguf, 4096);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_TRUE(files->tokenizer_json.empty());
  ASSERT_FALSE(files->tokenizer_model.empty());
  TempDir dir;
  WriteText(dir.path() + "/tokenizer.model", files->tokenizer_model);
  auto written = tokenizer::LoadSentencePiece(dir.path() + "/tokenizer.model");
  ASSERT_TRUE(written.ok()) << written.status();
  auto from_gguf = tokenizer::TokenizerFromGguf(**gguf);
  ASSERT_TRUE(from_gguf.ok());
  EXPECT_EQ((*written)->vocab_size(), 1000);
  EXPECT_EQ((*written)->bos_id(), 1);
  EXPECT_EQ((*written)->eos_id(), 2);
  const nlohmann::json expected =
      nlohmann::json::parse(Slurp(kFixtures + "/tokenizer/sentencepiece/expected.json"));
  int n = 0;
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ((*written)->Encode(text), c["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ((*written)->Encode(text, true), c["ids_with_special"].get<std::vector<int32_t>>())
        << text;
    EXPECT_EQ((*written)->Encode(text, true), (*from_gguf)->Encode(text, true)) << text;
    EXPECT_EQ((*written)->Decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"]) << text;
    ++n;
  }
  for (const auto& c : expected["special_cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ((*written)->Encode(text), c["ids"].get<std::vector<int32_t>>()) << text;
  }
  EXPECT_GT(n, 10);
  const nlohmann::json config = nlohmann::json::parse(files->tokenizer_config_json);
  EXPECT_EQ(config["tokenizer_class"], "LlamaTokenizer");
  EXPECT_EQ(config["bos_token"], "<s>");
  EXPECT_EQ(config["add_bos_token"], true);
}

TEST(HfTokenizer, UnknownPreTokenizerIsRefusedByName) {
  auto bad = io::GgufFile::Open(kFixtures + "/tokenizer/bad_pre.gguf");
  ASSERT_TRUE(bad.ok());
  auto r = HfTokenizerFromGguf(**bad, 4096);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("tokenizer.ggml.pre"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());
}

}  // namespace
}  // namespace linearize::convert
