// The architecture hyper-parameters of a Llama-family model, read from a
// Hugging Face config.json or from GGUF metadata.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace linearize::io {

class GgufFile;

// Llama 3 style RoPE frequency scaling ("rope_type": "llama3").
struct RopeScaling {
  std::string type;  // "llama3", "linear", or "" for none
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2" (lower case)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2)
  std::optional<int64_t> sliding_window;  // Mistral; informational
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // as stored ("bfloat16", "float32", ...)
};

// Architectures the model code implements, for error messages.
const std::vector<std::string>& SupportedArchitectures();

// Parses config.json text. `filename` is used in errors, which name the
// missing or malformed field; unsupported architectures list the supported.
absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view filename);
absl::StatusOr<ModelConfig> ReadHfConfig(const std::string& path);
// Reads "<arch>.*" metadata of a GGUF file (llama, qwen2).
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf);

}  // namespace linearize::io
