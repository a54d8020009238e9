// Starting a conversion from a student converted before (ConvertOptions::
// init_from): its attention tensors and its LoRA replace the fresh
// initialisation, and both stages train on from there (for example on longer
// sequences or other data). The student may be a conversion's output
// directory (the LoRA from its adapter/, else its delta/) or a delta
// (model::LoadDelta's layout); its linear_attention section must equal the
// run's, and its LoRA the run's targets, ranks and scale.
#pragma once

#include <c10/core/Device.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "common/model/linear_attention_config.h"
#include "common/model/lora.h"
#include "common/model/student_attention.h"

namespace linearize::convert {

struct StudentInit {
  std::vector<model::StudentTensors> attention;  // per layer; empty maps for unconverted ones
  model::LoraAdapters lora;
};

// Reads the student in `dir` (float32 on `device`) for a run of `teacher`.
// INVALID_ARGUMENT names what differs from `want` (the run's
// linear_attention settings) or what is missing; NOT_FOUND a directory
// without config.json; FAILED_PRECONDITION a student whose delta names
// another teacher file by SHA-256 (checked when `teacher` is a file).
absl::StatusOr<StudentInit> ReadStudentInit(const std::string& dir, const std::string& teacher,
                                            const model::LinearAttentionConfig& want,
                                            const io::ModelConfig& model, c10::Device device);

// Copies `init` into the run's freshly initialised tensors, in place: every
// layer that `students` holds (a block run holds only its block's) and every
// LoRA pair of `lora`. The names, shapes and LoRA scale must match, else
// INVALID_ARGUMENT names the first that does not (`dir` starts the message).
absl::Status CopyStudentInit(const StudentInit& init, const std::string& dir,
                             std::vector<model::StudentTensors>* students,
                             model::LoraAdapters* lora);

}  // namespace linearize::convert
