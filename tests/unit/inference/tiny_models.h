// Tiny random Llama checkpoints with a real tokenizer (the Qwen2 fixture's
// byte-level BPE and ChatML template), written at test time: the softmax
// model and its converted (student) versions, so the serving code runs on
// real files in milliseconds per token.
#pragma once

#include <ATen/ATen.h>
#include <ftw.h>
#include <stdlib.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "common/io/safetensors.h"
#include "common/model/linear_attention_config.h"
#include "common/model/student_attention.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace linearize::testing {

inline std::string TempDir(const std::string& tag) {
  std::string pattern = ::testing::TempDir() + "/" + tag + "_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
  return pattern;
}

inline void RemoveTree(const std::string& dir) {
  nftw(dir.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); },
       16, FTW_DEPTH | FTW_PHYS);
}

inline void CopyFileTo(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
}

// Writes the model into `dir` (created by the caller). With a recipe, the
// checkpoint is a converted one: config.json's linear_attention section and
// the student tensors, initialised as the conversion starts them.
inline void WriteTinyModel(const std::string& dir, std::optional<model::Recipe> recipe,
                           uint64_t seed = 7) {
  const int64_t hidden = 64, layers = 2, heads = 4, kv_heads = 2, head_dim = 16, inter = 128;
  const int64_t vocab = 1536;  // the Qwen2 fixture tokenizer: 1500 + 3 added, padded
  nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"hidden_size", hidden}, {"intermediate_size", inter}, {"num_hidden_layers", layers},
      {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"head_dim", head_dim},
      {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"max_position_embeddings", 256},
      {"vocab_size", vocab}, {"tie_word_embeddings", false}, {"bos_token_id", nullptr},
      {"eos_token_id", 1501}, {"torch_dtype", "float32"}};
  at::manual_seed(static_cast<uint64_t>(seed));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double scale) {
    tensors.emplace_back(name, at::randn(shape) * scale);
  };
  add("model.embed_tokens.weight", {vocab, hidden}, 1.0);
  add("lm_head.weight", {vocab, hidden}, 0.3);
  tensors.emplace_back("model.norm.weight", at::ones({hidden}));
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "self_attn.q_proj.weight", {heads * head_dim, hidden}, 0.2);
    add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden}, 0.2);
    add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden}, 0.2);
    add(p + "self_attn.o_proj.weight", {hidden, heads * head_dim}, 0.2);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, 0.2);
    add(p + "mlp.up_proj.weight", {inter, hidden}, 0.2);
    add(p + "mlp.down_proj.weight", {hidden, inter}, 0.2);
    tensors.emplace_back(p + "input_layernorm.weight", at::ones({hidden}));
    tensors.emplace_back(p + "post_attention_layernorm.weight", at::ones({hidden}));
  }
  if (recipe) {
    model::LinearAttentionConfig la = model::DefaultLinearAttentionConfig(*recipe);
    la.feature_dim = 8;
    la.window = 4;  // small, so short tests cross the window
    la.meta_tokens = 2;
    config["linear_attention"] = model::LinearAttentionConfigToJson(la);
    io::ModelConfig mc;
    mc.hidden_size = hidden;
    mc.num_attention_heads = heads;
    mc.num_key_value_heads = kv_heads;
    mc.head_dim = head_dim;
    mc.num_hidden_layers = layers;
    for (int64_t i = 0; i < layers; ++i) {
      for (auto& [name, t] : model::InitStudentTensors(la, mc, i, seed)) {
        tensors.emplace_back("model.layers." + std::to_string(i) + ".self_attn." + name, t);
      }
    }
  }
  std::vector<io::TensorToWrite> out;
  for (auto& [name, t] : tensors) {
    t = t.contiguous().to(at::kFloat);
    out.push_back({name, io::DType::kF32, t.sizes().vec(),
                   {static_cast<const std::byte*>(t.data_ptr()), t.nbytes()}});
  }
  ASSERT_TRUE(io::WriteSafetensors(dir + "/model.safetensors", out).ok());
  std::ofstream(dir + "/config.json") << config.dump(2);
  const std::string tok = std::string(LINEARIZE_FIXTURES_DIR) + "/tokenizer/qwen2/";
  CopyFileTo(tok + "tokenizer.json", dir + "/tokenizer.json");
  CopyFileTo(tok + "tokenizer_config.json", dir + "/tokenizer_config.json");
}

}  // namespace linearize::testing
