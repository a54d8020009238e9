// One decode step of a recurrent model, captured once as a CUDA graph and
// replayed for every token. An 8B model's step is ~2000 small kernels; issued
// one by one from the host they take longer than the GPU needs to read the
// weights, so a batch-1 decode runs at the host's launch rate. Replaying the
// graph issues them in one call (vLLM captures its decode steps the same way).
//
// The graph is bound to one Memory's state tensors, which a recurrent state
// updates in place (Memory::Import copies into them too), so their addresses
// never change; a different Memory needs its own capture.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/model/memory.h"

namespace linearize::model {

class DecodeGraph {
 public:
  // Captures a step of `model` over `memory` (every row at one position; both
  // must outlive the graph). FAILED_PRECONDITION when the model keeps a KV
  // cache or is not on CUDA, or a layer's step cannot be captured (it waits
  // for the host, like the LibTorch fallbacks of the decode kernels);
  // UNIMPLEMENTED in a build without CUDA. The memory is unchanged.
  static absl::StatusOr<std::unique_ptr<DecodeGraph>> Capture(const LlamaModel& model,
                                                              Memory* memory);
  ~DecodeGraph();

  // ids [B] int64 (any device) -> logits [B, V] float32 on the GPU, the same
  // as Forward(ids.view({B, 1}), memory, kLast) would give; the tensor is
  // overwritten by the next Step. Advances the memory by one token.
  // INVALID_ARGUMENT for a wrong shape (token ids are not range-checked: the
  // caller sampled them from this model's logits).
  absl::StatusOr<at::Tensor> Step(const at::Tensor& ids);

  // Kernel launches in one step (what the fusions in LlamaModel cut).
  int64_t kernels_per_step() const;

 private:
  struct Impl;
  explicit DecodeGraph(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace linearize::model
