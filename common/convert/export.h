// Writing a converted model as a self-contained Hugging Face directory that
// model::LoadModel serves: config.json (the teacher's, or for a GGUF teacher
// the one derived from its metadata, plus the linear_attention section),
// model.safetensors (the final student's weights: the teacher's with the
// LoRA merged into the projections, float32, plus the student attention
// tensors), the tokenizer files, generation_config.json, a README.md model
// card and, on request, the LoRA as a PEFT adapter in adapter/
// (adapter_config.json + adapter_model.safetensors).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/convert/pipeline.h"
#include "common/convert/teacher.h"
#include "common/model/llama_model.h"
#include "common/model/student_attention.h"

namespace linearize::convert {

struct ExportInputs {
  const Teacher* teacher = nullptr;
  const ConvertOptions* options = nullptr;
  // The final student: its weights are written as they are (LoRA merged).
  const model::LlamaModel* student = nullptr;
  // Per layer: the student tensors (empty for layers left softmax).
  std::vector<model::StudentTensors> students;
  // The LoRA that was merged, for the PEFT files (options->peft); may be null.
  const model::LoraAdapters* lora = nullptr;
  const ConvertResult* result = nullptr;
  std::string data_source;
};

// Writes every file into a staging folder inside `dir` first and then
// renames them into `dir`, so a failure while writing (a full disk) leaves
// the files of a previous export in place; the error names the file.
absl::Status ExportModel(const ExportInputs& in, const std::string& dir);

// The PEFT names of the adapter tensors
// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").
std::string PeftTensorName(const std::string& lora_name);

}  // namespace linearize::convert
