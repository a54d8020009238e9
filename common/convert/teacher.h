// The teacher of a conversion, from a Hugging Face directory or a GGUF file,
// together with what the converted model's directory needs from it: its
// config.json (for GGUF, derived from the metadata) and its tokenizer files
// (for GGUF, tokenizer.json etc. built from the metadata).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/load.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {

struct Teacher {
  // A GGUF teacher is rebuilt from its Hugging Face view: the config parsed
  // back from `config_json` and the dequantized weights (Q/K rows in Hugging
  // Face order; the llama3 RoPE schedule from the config, not rope_freqs), so
  // the student computes exactly what the written directory loads as.
  model::LoadedModel loaded;
  nlohmann::json config_json;  // the output's config.json before linear_attention
  // Small files the output holds as they are (tokenizer, generation config):
  // file name -> contents.
  std::vector<std::pair<std::string, std::string>> files;
  bool gguf = false;
  std::string description;  // for the model card
  std::string identity;     // path and sizes, for the checkpoint fingerprint
};

// NOT_FOUND when `path` does not exist; INVALID_ARGUMENT / UNIMPLEMENTED
// (naming the file and what is wrong) for an unreadable or unsupported
// model, an already converted one, or a GGUF whose tokenizer cannot be
// written as tokenizer.json (checked: the written tokenizer must encode a
// probe text as the GGUF's own does).
// The weights are stored as `weights` says (dtype and device); with
// `layers`, only those decoder layers' (model::LoadOptions::layers).
absl::StatusOr<Teacher> LoadTeacher(const std::string& path,
                                    const model::WeightOptions& weights = {},
                                    const std::optional<model::LayerRange>& layers = std::nullopt);

}  // namespace linearize::convert
