// Writing Hugging Face config.json (and generation_config.json) objects: for
// a ModelConfig, and for the model a GGUF file holds, with the Llama 3 RoPE
// schedule that llama.cpp stores as per-frequency divisors
// (rope_freqs.weight) turned back into a `rope_scaling` section.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "nlohmann/json.hpp"

namespace linearize::io {

class GgufFile;

// The config.json transformers writes for `config` (LlamaForCausalLM,
// MistralForCausalLM or Qwen2ForCausalLM): sizes, RoPE (rope_theta and
// rope_scaling), token ids, tie_word_embeddings and `torch_dtype` as given.
// Floats that are exactly float32 values (as GGUF stores them) are written
// as the shortest decimal of that float32 (9.99999974738e-06 -> 1e-05).
// ParseHfConfig of the result gives back `config`, with those floats so
// rounded.
nlohmann::json HfConfigJson(const ModelConfig& config, std::string_view torch_dtype);

// generation_config.json: bos/eos (and pad when given, >= 0) token ids.
nlohmann::json HfGenerationConfigJson(const ModelConfig& config, int64_t pad_token_id = -1);

// The llama3 rope_scaling that reproduces `factors`, the divisors of the
// default inverse frequencies of a model with `head_dim` and `rope_theta`
// (llama.cpp's rope_freqs.weight). Only ratios of original_max_position_
// embeddings, low_freq_factor and high_freq_factor matter at the sampled
// frequencies, so several answers are equally exact; round values are
// preferred. All factors 1: type "" (no scaling). INVALID_ARGUMENT when no
// llama3 schedule reproduces the factors within 1e-5 relative.
absl::StatusOr<RopeScaling> Llama3ScalingFromFactors(std::span<const float> factors,
                                                     double rope_theta, int64_t head_dim);

// The Hugging Face view of a GGUF model: ModelConfigFromGguf, plus llama3
// rope_scaling recovered from rope_freqs.weight when the file has one. The
// tensors are then loaded without rope_freqs (the config carries it).
absl::StatusOr<ModelConfig> HfModelConfigFromGguf(const GgufFile& gguf);

// config.json for a GGUF file: HfConfigJson(HfModelConfigFromGguf(gguf)),
// plus pad_token_id from tokenizer.ggml.padding_token_id.
absl::StatusOr<nlohmann::json> HfConfigFromGguf(const GgufFile& gguf,
                                                std::string_view torch_dtype = "float32");

}  // namespace linearize::io
