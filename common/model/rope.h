// Rotary position embedding, Hugging Face convention (rotate_half: the two
// halves of each head are the pairs), with the frequency schedules Llama
// models use: default, "linear" and Llama 3.1's "llama3" scaling, or
// per-frequency divisors stored in a GGUF file (rope_freqs.weight).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"

namespace linearize::model {

class RotaryEmbedding {
 public:
  // Inverse frequencies [head_dim/2] (float32, CPU) as transformers computes
  // them. `freq_factors`, when defined ([head_dim/2]), divides them instead
  // of the config's llama3 scaling (llama.cpp stores the llama3 schedule so).
  static absl::StatusOr<RotaryEmbedding> Create(const io::ModelConfig& config,
                                                const at::Tensor& freq_factors = {});

  const at::Tensor& inv_freq() const { return inv_freq_; }
  // Moves the frequencies to `device` (once, at model creation).
  void To(const c10::Device& device);

  // cos and sin [T, head_dim] for positions start .. start+length-1, computed
  // in float32 and cast to `dtype`.
  std::pair<at::Tensor, at::Tensor> CosSin(int64_t start, int64_t length,
                                           at::ScalarType dtype) const;
  // Per-row positions [B] (int64) -> cos, sin [B, 1, 1, D], for one token of
  // each of B sequences at different positions.
  std::pair<at::Tensor, at::Tensor> CosSinRows(const at::Tensor& positions,
                                               at::ScalarType dtype) const;

 private:
  explicit RotaryEmbedding(at::Tensor inv_freq) : inv_freq_(std::move(inv_freq)) {}
  at::Tensor inv_freq_;
};

// Applying cos/sin to q and k: kernels::Rotary (kernels/rope/rope.h).

}  // namespace linearize::model
