#include "common/model/linear_attention_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace linearize::model {

std::string_view RecipeName(Recipe recipe) {
  switch (recipe) {
    case Recipe::kLolcats: return "lolcats";
    case Recipe::kLizard: return "lizard";
    case Recipe::kLinear: return "linear";
  }
  return "?";
}

absl::StatusOr<Recipe> ParseRecipe(std::string_view name) {
  for (Recipe r : {Recipe::kLolcats, Recipe::kLizard, Recipe::kLinear}) {
    if (name == RecipeName(r)) return r;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown recipe \"", std::string(name), "\"; supported: lolcats, lizard, linear"));
}

LinearAttentionConfig DefaultLinearAttentionConfig(Recipe recipe) {
  LinearAttentionConfig c;
  c.recipe = recipe;
  if (recipe == Recipe::kLizard) c.window = 128;
  return c;
}

bool IsConverted(const LinearAttentionConfig& config, int64_t layer) {
  return config.layers.empty() ||
         std::binary_search(config.layers.begin(), config.layers.end(), layer);
}

absl::Status ValidateLinearAttentionConfig(const LinearAttentionConfig& c,
                                           const io::ModelConfig& model) {
  if (c.feature_dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("linear_attention.feature_dim must be >= 1, got ", c.feature_dim));
  }
  if (c.recipe != Recipe::kLinear && c.window < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("linear_attention.window must be >= 1, got ", c.window));
  }
  if (c.meta_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("linear_attention.meta_tokens must be >= 0, got ", c.meta_tokens));
  }
  if (!(c.gate_normalizer > 0) || !std::isfinite(c.gate_normalizer)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "linear_attention.gate_normalizer must be > 0, got ", c.gate_normalizer));
  }
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const int64_t l = c.layers[i];
    if (l < 0 || l >= model.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("linear_attention.layers: layer ", l,
                                                     " is outside [0, ", model.num_hidden_layers,
                                                     ")"));
    }
    if (i > 0 && l <= c.layers[i - 1]) {
      return absl::InvalidArgumentError(
          "linear_attention.layers must be ascending without duplicates");
    }
  }
  return absl::OkStatus();
}

nlohmann::json LinearAttentionConfigToJson(const LinearAttentionConfig& c) {
  nlohmann::json j;
  j["recipe"] = std::string(RecipeName(c.recipe));
  j["feature_map"] = c.recipe == Recipe::kLinear ? "elu_plus_one" : "hedgehog";
  j["feature_dim"] = c.feature_dim;
  j["window"] = c.window;
  j["window_kind"] = c.terrace ? "terrace" : "sliding";
  j["meta_tokens"] = c.meta_tokens;
  j["gate_normalizer"] = c.gate_normalizer;
  j["layers"] = c.layers;
  return j;
}

absl::StatusOr<LinearAttentionConfig> LinearAttentionConfigFromJson(const nlohmann::json& j,
                                                                    std::string_view where) {
  const std::string at = absl::StrCat(std::string(where), ": linear_attention");
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(at, " must be an object"));
  if (!j.contains("recipe") || !j["recipe"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".recipe must be a string"));
  }
  absl::StatusOr<Recipe> recipe = ParseRecipe(j["recipe"].get<std::string>());
  if (!recipe.ok()) return absl::InvalidArgumentError(absl::StrCat(at, ".recipe: ", recipe.status().message()));
  LinearAttentionConfig c = DefaultLinearAttentionConfig(*recipe);
  auto get_int = [&](const char* key, int64_t* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".", key, " must be an integer"));
    }
    *out = j[key].get<int64_t>();
    return absl::OkStatus();
  };
  for (auto [key, slot] : {std::pair<const char*, int64_t*>{"feature_dim", &c.feature_dim},
                           {"window", &c.window},
                           {"meta_tokens", &c.meta_tokens}}) {
    if (absl::Status s = get_int(key, slot); !s.ok()) return s;
  }
  if (j.contains("window_kind")) {
    const auto& w = j["window_kind"];
    if (!w.is_string() || (w != "sliding" && w != "terrace")) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".window_kind must be \"sliding\" or \"terrace\""));
    }
    c.terrace = w == "terrace";
  }
  if (j.contains("gate_normalizer")) {
    if (!j["gate_normalizer"].is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".gate_normalizer must be a number"));
    }
    c.gate_normalizer = j["gate_normalizer"].get<double>();
  }
  if (j.contains("layers")) {
    if (!j["layers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".layers must be a list of integers"));
    }
    for (const auto& l : j["layers"]) {
      if (!l.is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".layers must be a list of integers"));
      }
      c.layers.push_back(l.get<int64_t>());
    }
  }
  return c;
}

}  // namespace linearize::model
