// The `linear_attention` section of a converted model's config.json: which
// recipe replaced the softmax attention, its sizes, and which layers it
// replaced. LoadModel reads it to rebuild the student attentions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "nlohmann/json.hpp"

namespace linearize::model {

enum class Recipe { kLolcats, kLizard, kLinear };

std::string_view RecipeName(Recipe recipe);  // "lolcats", "lizard", "linear"
// INVALID_ARGUMENT lists the supported recipes.
absl::StatusOr<Recipe> ParseRecipe(std::string_view name);

struct LinearAttentionConfig {
  Recipe recipe = Recipe::kLolcats;
  // Hedgehog projection width F per head (2F features); unused by kLinear
  // (elu+1, head_dim features).
  int64_t feature_dim = 64;
  int64_t window = 64;      // softmax window (lolcats 64, lizard 128; unused by kLinear)
  bool terrace = false;     // lolcats: blocked window (own block + previous)
  int64_t meta_tokens = 4;  // lizard: learned sink logits per head
  // Lizard's gate: log gamma = logsigmoid(W_gamma x) / gate_normalizer
  // (GLA's normaliser 16, so gamma starts near 0.96 rather than 0.5).
  double gate_normalizer = 16;
  std::vector<int64_t> layers;  // converted layers, ascending; empty: all
};

// The recipe's defaults (DESIGN.md): lolcats F 64, window 64; lizard F 64,
// window 128, 4 meta tokens; linear elu+1.
LinearAttentionConfig DefaultLinearAttentionConfig(Recipe recipe);

// Checks sizes against the model (positive sizes, layers in range, sorted,
// unique); errors name the field.
absl::Status ValidateLinearAttentionConfig(const LinearAttentionConfig& config,
                                           const io::ModelConfig& model);
// Whether `layer` is converted.
bool IsConverted(const LinearAttentionConfig& config, int64_t layer);

nlohmann::json LinearAttentionConfigToJson(const LinearAttentionConfig& config);
// `where` prefixes errors ("model/config.json: linear_attention.window ...").
absl::StatusOr<LinearAttentionConfig> LinearAttentionConfigFromJson(const nlohmann::json& j,
                                                                    std::string_view where);

}  // namespace linearize::model
