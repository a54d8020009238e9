// Choosing the next token from logits: a repetition penalty, then greedy, or
// sampling with temperature, top-k, top-p and min-p (in that order, as
// Hugging Face's processors and warpers apply them).
// Sampling is deterministic for a seed: each Sampler owns its generator.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace linearize::runtime {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy (argmax); else > 0
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest set with this much mass; (0, 1]
  uint64_t seed = 0;
  // Drop tokens less likely than min_p times the most likely one; [0, 1].
  double min_p = 0.0;
  // Logits of observed tokens: positive ones divided by it, negative ones
  // multiplied (CTRL / Hugging Face); 1 = off; (0, 10].
  double repetition_penalty = 1.0;
};

// INVALID_ARGUMENT naming the field: temperature negative or not finite,
// top_k negative, top_p outside (0, 1] or not finite, min_p outside [0, 1],
// repetition_penalty outside (0, 10].
absl::Status ValidateSamplingParams(const SamplingParams& params);

// Not thread-safe (one request's generator).
class Sampler {
 public:
  static absl::StatusOr<Sampler> Create(const SamplingParams& params);

  bool greedy() const { return params_.temperature == 0.0; }
  const SamplingParams& params() const { return params_; }

  // logits: [V] (any float dtype, any device). Returns the chosen id.
  // INVALID_ARGUMENT for an empty or non-1-D tensor.
  absl::StatusOr<int32_t> Sample(const at::Tensor& logits);

  // Marks a token as seen (prompt or output) for the repetition penalty.
  void Observe(int32_t id) {
    if (params_.repetition_penalty != 1.0) seen_.insert(id);
  }

  // The distribution Sample draws from: (id, probability) for every token
  // that survives top-k/top-p, most likely first, probabilities summing to
  // 1. Greedy: the argmax with probability 1.
  std::vector<std::pair<int32_t, double>> Distribution(const at::Tensor& logits) const;

 private:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  std::vector<float> Penalized(const at::Tensor& logits) const;
  std::vector<std::pair<int32_t, double>> Distribution(const std::vector<float>& logits) const;
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> seen_;
};

// Log-probabilities under the raw distribution log_softmax(logits [V]): the
// chosen token's, and the `top` most likely (id, logprob), most likely first.
struct TokenLogprobs {
  float chosen = 0;
  std::vector<std::pair<int32_t, float>> top;
};
TokenLogprobs ComputeLogprobs(const at::Tensor& logits, int32_t chosen, int64_t top);

}  // namespace linearize::runtime
