// Loading a model for inference: config, weights, tokenizer and chat format
// from a Hugging Face directory or a GGUF file, and locating the embedded
// default model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "common/model/linear_attention_config.h"
#include "common/model/llama_model.h"
#include "common/model/weights.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::model {

// The file name of the embedded default model.
inline constexpr std::string_view kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

struct LoadedModel {
  std::string path;  // what was loaded
  io::ModelConfig config;
  std::unique_ptr<LlamaModel> model;
  // Null when a directory has neither tokenizer.json nor tokenizer.model.
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::string chat_template;  // Jinja source; "" when there is none
  tokenizer::ChatFormat chat_format = tokenizer::ChatFormat::kPlain;
  // The system prompt the template inserts when a conversation has none
  // (SmolLM2's "You are a helpful AI assistant named SmolLM, ..."), or "".
  std::string default_system_prompt;
  // Set for a converted model (config.json's linear_attention section); its
  // layers then run the student attentions.
  std::optional<LinearAttentionConfig> linear_attention;
};

struct LoadOptions {
  WeightOptions weights;
  // Only these decoder layers' weights (a block of the model, for blockwise
  // attention transfer): no other layer's, no embeddings, final norm or LM
  // head. The config stays the whole model's; the model runs only
  // ForwardLayers within the range (FAILED_PRECONDITION otherwise). Not for
  // delta directories. Unset: the whole model.
  std::optional<LayerRange> layers;
};

// `path` is a directory (config.json; model.safetensors or a sharded index;
// tokenizer.json or tokenizer.model; tokenizer_config.json's chat_template or
// chat_template.jinja, all optional but the first two), a delta directory
// over a base model (delta_load.h) or a .gguf file (config, weights,
// tokenizer and template from the one file).
absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options = {});

// The embedded default model's path: $LINEARIZE_MODEL when set (NOT_FOUND if
// it does not exist), else kDefaultModelFile in LINEARIZE_DEFAULT_MODEL_DIR
// (set at build time), else NOT_FOUND saying to run scripts/setup.
absl::StatusOr<std::string> FindDefaultModel();

// Ids that end generation: the config's EOS ids, the tokenizer's EOS and the
// chat format's end-of-turn tokens, without duplicates.
std::vector<int32_t> StopTokenIds(const LoadedModel& loaded);

}  // namespace linearize::model
