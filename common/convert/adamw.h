// AdamW (Loshchilov & Hutter) over named fp32 tensors, with its state
// exposed as named tensors so checkpoints restore it bit for bit.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace linearize::convert {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double max_grad_norm = 1.0;  // clip the gradient norm; 0: off
  // Clip each group of parameters on its own, a group being the names that
  // share the text before their first '.' (stage 1's "<layer>.<tensor>":
  // one group per layer, so a layer's update never depends on another's,
  // and blockwise transfer equals a whole-model run). false: one global norm.
  bool clip_per_prefix = false;
};

// Not thread-safe.
class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options = {});

  // Applies one update with learning rate `lr` from the accumulated .grad()
  // of every parameter (missing grads count as zero), then zeroes them.
  // Returns the gradient norm before clipping.
  double Step(double lr);
  void ZeroGrad();
  int64_t steps() const { return steps_; }

  // "<name>/exp_avg", "<name>/exp_avg_sq" -> tensors, for checkpoints.
  std::vector<std::pair<std::string, at::Tensor>> State() const;
  // Restores what State() returned (names must match) and the step count.
  absl::Status Restore(const std::vector<std::pair<std::string, at::Tensor>>& state,
                       int64_t steps);

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

}  // namespace linearize::convert
