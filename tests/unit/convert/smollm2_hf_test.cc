// The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF) as a
// Hugging Face directory, without its weights: the config.json derived from
// the GGUF metadata has SmolLM2's published values, and the tokenizer.json
// derived from it encodes every text of the tokenizer fixture exactly as
// Hugging Face `tokenizers` does with SmolLM2's own tokenizer.json: through
// our loader, and through transformers' AutoTokenizer (which also checks
// the config against transformers' own reading of the GGUF). Seconds.
#include <gtest/gtest.h>

#include "common/convert/hf_tokenizer.h"
#include "common/io/gguf.h"
#include "common/io/hf_config_writer.h"
#include "common/io/model_config.h"
#include "common/model/load.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::RunHfCheck;
using testing::Slurp;
using testing::TempDir;
using testing::VenvPython;
using testing::WriteText;

TEST(SmolLm2Hf, DerivedConfigAndTokenizerMatchHuggingFace) {
  absl::StatusOr<std::string> path = model::FindDefaultModel();
  if (!path.ok()) GTEST_SKIP() << path.status() << " (scripts/setup installs it)";
  auto gguf = io::GgufFile::Open(*path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();

  auto config = io::HfConfigFromGguf(**gguf);
  ASSERT_TRUE(config.ok()) << config.status();
  const nlohmann::json& c = *config;
  // SmolLM2-135M-Instruct's config.json on the Hugging Face hub.
  EXPECT_EQ(c["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(c["model_type"], "llama");
  EXPECT_EQ(c["hidden_size"], 576);
  EXPECT_EQ(c["intermediate_size"], 1536);
  EXPECT_EQ(c["num_hidden_layers"], 30);
  EXPECT_EQ(c["num_attention_heads"], 9);
  EXPECT_EQ(c["num_key_value_heads"], 3);
  EXPECT_EQ(c["head_dim"], 64);
  EXPECT_EQ(c["vocab_size"], 49152);
  EXPECT_EQ(c["max_position_embeddings"], 8192);
  EXPECT_EQ(c["rope_theta"], 100000.0);
  EXPECT_EQ(c["rms_norm_eps"], 1e-05);
  EXPECT_TRUE(c["rope_scaling"].is_null());
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
  EXPECT_EQ(c["pad_token_id"], 2);
  EXPECT_EQ(c["torch_dtype"], "float32");
  auto parsed = io::ParseHfConfig(c.dump(), "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto from_gguf = io::ModelConfigFromGguf(**gguf);
  ASSERT_TRUE(from_gguf.ok());
  EXPECT_EQ(static_cast<float>(parsed->rms_norm_eps), static_cast<float>(from_gguf->rms_norm_eps));

  auto files = HfTokenizerFromGguf(**gguf, parsed->max_position_embeddings);
  ASSERT_TRUE(files.ok()) << files.status();
  TempDir dir;
  WriteText(dir.path() + "/config.json", c.dump(2));
  WriteText(dir.path() + "/tokenizer.json", files->tokenizer_json);
  WriteText(dir.path() + "/tokenizer_config.json", files->tokenizer_config_json);
  WriteText(dir.path() + "/special_tokens_map.json", files->special_tokens_map_json);
  const nlohmann::json tc = nlohmann::json::parse(files->tokenizer_config_json);
  EXPECT_EQ(tc["bos_token"], "<|im_start|>");
  EXPECT_EQ(tc["eos_token"], "<|im_end|>");
  EXPECT_EQ(tc["add_bos_token"], false);
  EXPECT_NE(tc["chat_template"].get<std::string>().find("<|im_start|>"), std::string::npos);

  auto written = tokenizer::LoadTokenizerJson(dir.path() + "/tokenizer.json");
  ASSERT_TRUE(written.ok()) << written.status();
  auto ours = tokenizer::TokenizerFromGguf(**gguf);
  ASSERT_TRUE(ours.ok());
  const std::string cases_file =
      std::string(LINEARIZE_FIXTURES_DIR) + "/tokenizer/smollm2/expected.json";
  const nlohmann::json expected = nlohmann::json::parse(Slurp(cases_file));
  for (const auto& k : expected["cases"]) {
    const std::string text = k["text"].get<std::string>();
    EXPECT_EQ((*written)->Encode(text), k["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ((*written)->Encode(text, true), k["ids_with_special"].get<std::vector<int32_t>>());
    EXPECT_EQ((*written)->Encode(text), (*ours)->Encode(text));
    EXPECT_EQ((*written)->Decode(k["ids"].get<std::vector<int32_t>>()), k["decoded"]);
  }
  EXPECT_EQ((*written)->eos_id(), 2);
  EXPECT_EQ((*written)->bos_id(), 1);

  if (VenvPython().empty()) GTEST_SKIP() << "no .venv: the transformers check needs scripts/setup";
  std::string output;
  const int rc = RunHfCheck(dir.path() + " --tokens " + cases_file + " --gguf " + *path, &output);
  std::printf("%s", output.c_str());
  EXPECT_EQ(rc, 0) << output;
}

}  // namespace
}  // namespace linearize::convert
