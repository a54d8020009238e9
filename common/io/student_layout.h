// Where a converted model's files sit, for readers with and without
// LibTorch (the converter's --init-from, the scheduler's checks).
#pragma once

#include <optional>
#include <string>

namespace linearize::io {

// The directory holding a converted model's LoRA kept apart (PEFT names,
// adapter_model.safetensors): its adapter/ (float32) before its delta/
// (bfloat16), else `dir` itself (a delta). nullopt when none has one: the
// LoRA was merged into the weights.
std::optional<std::string> StudentAdapterDir(const std::string& dir);

}  // namespace linearize::io
