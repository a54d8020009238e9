// Per-layer attention-output error of a student against its teacher: each
// converted layer's attention, fed the teacher layer's own inputs (q, k, v
// and hidden states from the teacher's forward), against the teacher's
// softmax attention output. The same quantity attention transfer minimises,
// measured on evaluation text: where along the depth the conversion is good
// or poor.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eval/token_scores.h"
#include "common/model/llama_model.h"

namespace linearize::eval {

struct LayerError {
  int64_t layer = 0;
  int64_t tokens = 0;   // positions compared
  double mse = 0;       // mean over elements of (student - teacher)^2
  double relative = 0;  // ||student - teacher|| / ||teacher|| (Frobenius)
};

// Layers whose attention in `student` is not the teacher's softmax, in
// order. `ids` are scored in chunks of `chunk` tokens (0: the teacher's
// context), each chunk a sequence of its own. INVALID_ARGUMENT when the
// models' shapes differ or ids are out of range or fewer than 1.
absl::StatusOr<std::vector<LayerError>> CompareAttentionLayers(const model::LlamaModel& teacher,
                                                               const model::LlamaModel& student,
                                                               std::span<const int32_t> ids,
                                                               int64_t chunk = 0);

struct ComparisonWithLayers {
  Comparison comparison;
  std::vector<LayerError> layers;
};
// CompareModels and CompareAttentionLayers in one pass of the teacher over
// the text (the layer errors on CompareModels' chunks), for a report that
// has both.
absl::StatusOr<ComparisonWithLayers> CompareModelsAndLayers(const model::LlamaModel& teacher,
                                                            const model::LlamaModel& student,
                                                            std::span<const int32_t> ids,
                                                            int64_t chunk = 0);

}  // namespace linearize::eval
