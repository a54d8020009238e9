// LoRA (Hu et al. 2021) adapters on the attention projections: each adapted
// projection W x becomes W x + scale * B (A dropout(x)), A [r, in] and
// B [out, r], scale = alpha / r. B starts at zero, so a fresh adapter leaves
// the model unchanged.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"

namespace linearize::model {

enum class LoraTarget { kQ = 0, kK = 1, kV = 2, kO = 3 };
inline constexpr int kNumLoraTargets = 4;

// "q_proj", "k_proj", "v_proj", "o_proj".
std::string_view LoraTargetName(LoraTarget target);
// Parses "q", "q_proj" (and k/v/o); INVALID_ARGUMENT lists the accepted names.
absl::StatusOr<LoraTarget> ParseLoraTarget(std::string_view name);

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<LoraTarget> targets = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV,
                                     LoraTarget::kO};
};

struct LoraPair {
  at::Tensor a;  // [r, in]
  at::Tensor b;  // [out, r]
};

// The adapters of every layer; an undefined pair leaves that projection
// alone. Not thread-safe while `training` changes.
struct LoraAdapters {
  double scale = 2.0;  // alpha / rank
  double dropout = 0;
  bool training = false;  // dropout only while training
  std::vector<std::array<LoraPair, kNumLoraTargets>> layers;

  // The low-rank term for `x` (the projection's input) or an undefined tensor.
  at::Tensor Delta(int64_t layer, LoraTarget target, const at::Tensor& x) const;
  // Trainable tensors with their checkpoint names
  // ("model.layers.0.self_attn.q_proj.lora_A.weight").
  std::vector<std::pair<std::string, at::Tensor>> Named() const;
};

// Fresh adapters for `config`: A Kaiming-uniform-like from a generator seeded
// with `seed`, B zero; fp32 on `device`; requires_grad set.
absl::StatusOr<LoraAdapters> NewLoraAdapters(const io::ModelConfig& config,
                                             const LoraOptions& options, uint64_t seed,
                                             c10::Device device);

// W + scale * B A for one projection weight (for merging before export).
at::Tensor MergeLora(const at::Tensor& weight, const LoraPair& pair, double scale);

}  // namespace linearize::model
