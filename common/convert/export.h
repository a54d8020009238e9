// Writing a converted model as a Hugging Face directory: config.json (the
// teacher's, plus the linear_attention section), model.safetensors (teacher
// weights with LoRA merged in, plus the student tensors), the teacher's
// tokenizer files and a README.md model card.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/convert/pipeline.h"
#include "common/model/load.h"
#include "common/model/student_attention.h"

namespace linearize::convert {

struct ExportInputs {
  const model::LoadedModel* teacher = nullptr;
  std::string teacher_dir;
  const ConvertOptions* options = nullptr;
  // Per layer: the student tensors (empty for layers left softmax).
  std::vector<model::StudentTensors> students;
  const model::LoraAdapters* lora = nullptr;  // null: none
  const ConvertResult* result = nullptr;
  std::string data_source;
};

// Writes into `dir` (created), each file atomically.
absl::Status ExportModel(const ExportInputs& in, const std::string& dir);

}  // namespace linearize::convert
