// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM) as plain ATen
// ops: embedding, per layer RMSNorm -> q/k/v projections -> RoPE -> a
// pluggable AttentionLayer -> o_proj, RMSNorm -> SwiGLU, then a final
// RMSNorm and the LM head. Computes in the weights' dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/io/model_config.h"
#include "common/model/attention.h"
#include "common/model/lora.h"
#include "common/model/memory.h"
#include "common/model/rope.h"
#include "common/model/weights.h"

namespace linearize::model {

// Forward is const and may run concurrently on different Memory objects;
// SetAttention must not race with it.
class LlamaModel {
 public:
  // Validates config and weight shapes (errors name the tensor); every layer
  // starts with softmax attention (SoftmaxAttention).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(io::ModelConfig config,
                                                            ModelWeights weights);

  const io::ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  at::ScalarType dtype() const { return dtype_; }
  c10::Device device() const { return device_; }
  int64_t num_layers() const { return config_.num_hidden_layers; }
  // Set for a model of only some layers' weights (ModelWeights::only_layers):
  // it runs ForwardLayers within them and nothing else.
  const std::optional<LayerRange>& only_layers() const { return weights_.only_layers; }
  int64_t vocab_size() const { return config_.vocab_size; }

  const AttentionLayer& attention(int64_t layer) const { return *attention_.at(layer); }
  // Replaces one layer's attention. Memories made before no longer fit.
  void SetAttention(int64_t layer, std::unique_ptr<AttentionLayer> attention);

  // LoRA adapters added to the attention projections (null: none). The
  // adapters are shared, not copied: training updates them in place.
  void SetLora(std::shared_ptr<const LoraAdapters> lora) { lora_ = std::move(lora); }

  // Activation checkpointing for training: while autograd records, each
  // decoder layer (after the first) keeps only its input and recomputes its
  // activations in the backward pass, trading compute for memory. Results
  // and gradients are those of the plain forward. Not for LoRA dropout (its
  // masks would differ on recomputation; the caller refuses that).
  void SetActivationCheckpointing(bool on) { checkpointing_ = on; }
  const LoraAdapters* lora() const { return lora_.get(); }

  // For serving: concatenates each layer's q/k/v weights (and biases) and its
  // gate/up weights, so that a step runs one GEMM per group, and lets the
  // o/down GEMMs add the residual. The separate weights become views of the
  // fused ones, so no memory is added unless another model shares them.
  // Results equal the unfused model's up to rounding; LoRA adapters still
  // apply. Call once after loading, before serving or capturing a
  // DecodeGraph (not while a forward runs). Idempotent.
  void FuseProjections();
  bool fused() const { return !fused_.empty(); }

  // A fresh memory for `batch` sequences; `capacity` is a hint of the tokens
  // it will hold (0: grow as needed).
  std::unique_ptr<Memory> NewMemory(int64_t batch, int64_t capacity = 0) const;

  enum class Logits { kAll, kLast };
  // ids [B, T] int64 (T >= 1) -> logits [B, T, V] float32 (or [B, 1, V] for
  // kLast). With `memory` the tokens continue its sequences (positions start
  // at memory->position()) and are added to it; without, they are a whole
  // sequence starting at position 0. INVALID_ARGUMENT for bad shapes, ids
  // outside the vocabulary or a memory of another batch size or model.
  // If an error interrupts a forward with a memory (only a failing
  // allocation can, after the checks), the memory is left unusable.
  absl::StatusOr<at::Tensor> Forward(const at::Tensor& ids, Memory* memory = nullptr,
                                     Logits which = Logits::kAll) const;
  // One decode step of N independent batch-1 memories at once, whose
  // positions may differ: ids [N] int64 -> logits [N, V] float32; memory j
  // takes token j. Only for models whose every layer keeps a fixed-size
  // recurrent state (FAILED_PRECONDITION otherwise: a KV cache cannot be
  // stacked across different lengths); INVALID_ARGUMENT as Forward.
  absl::StatusOr<at::Tensor> DecodeBatch(const at::Tensor& ids,
                                         std::span<Memory* const> memories) const;
  // Whether DecodeBatch can run: no layer keeps a KV cache.
  bool recurrent() const;

  // The same, stopping at the final RMSNorm: [B, T, H] in the model's dtype.
  absl::StatusOr<at::Tensor> ForwardHidden(const at::Tensor& ids,
                                           Memory* memory = nullptr) const;
  // ids [B, T] -> token embeddings [B, T, H], what layer 0 takes.
  absl::StatusOr<at::Tensor> Embed(const at::Tensor& ids) const;
  // Layers [first, first + count) on the residual stream `hidden` [B, T, H]
  // of whole sequences (positions from 0, no memory): the stream leaving
  // layer first + count - 1, before the final norm. Blockwise attention
  // transfer runs one block of the teacher from cached inputs with it.
  // INVALID_ARGUMENT names a bad range or shape; FAILED_PRECONDITION a range
  // outside only_layers(). The other forwards are FAILED_PRECONDITION for a
  // model with only_layers().
  absl::StatusOr<at::Tensor> ForwardLayers(const at::Tensor& hidden, int64_t first,
                                           int64_t count) const;
  // hidden [..., H] -> logits [..., V] float32 (to score long sequences a
  // chunk at a time).
  at::Tensor LmHead(const at::Tensor& hidden) const;

 private:
  LlamaModel(io::ModelConfig config, ModelWeights weights, RotaryEmbedding rope);
  absl::Status CheckInput(const at::Tensor& ids, const Memory* memory) const;
  // `row_positions` [B] (one token per row at its own position) replaces
  // memory->position() for RoPE when defined.
  at::Tensor HiddenUnchecked(const at::Tensor& ids, Memory* memory,
                             const at::Tensor& row_positions = {}) const;
  // Decoder layer i on x [B, T, H] (memory: its state, or null). A fused
  // model outside autograd reuses x's memory for the result.
  at::Tensor Layer(int64_t i, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                   Memory* memory, int64_t position) const;
  friend struct CheckpointedLayer;
  friend class DecodeGraph;  // captures HiddenUnchecked (no host-side checks)
  // x W^T + bias, plus the LoRA term when one is set for (layer, target).
  at::Tensor Project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                     int64_t layer, LoraTarget target) const;
  // Layer i's q, k, v projections [B, T, heads * D] of its input x. *h gets
  // the normalised input, or stays undefined when nothing but the products
  // needs it (a fused model without LoRA whose attention reads no hidden):
  // then the norm folds into the fused product.
  std::array<at::Tensor, 3> ProjectQkv(const at::Tensor& x, int64_t i, at::Tensor* h) const;
  // residual + x W^T (+ bias, + LoRA when `target` has one). A fused model
  // outside autograd accumulates into `residual` and returns it.
  at::Tensor AddProjected(const at::Tensor& residual, const at::Tensor& x, const at::Tensor& w,
                          const at::Tensor& bias, int64_t layer,
                          std::optional<LoraTarget> target) const;
  // residual + the SwiGLU MLP of layer i on the residual's post-attention norm.
  at::Tensor AddMlp(const at::Tensor& residual, int64_t i) const;

  io::ModelConfig config_;
  ModelWeights weights_;
  at::ScalarType dtype_ = at::kFloat;
  c10::Device device_ = c10::Device(c10::kCPU);
  RotaryEmbedding rope_;
  std::vector<std::unique_ptr<AttentionLayer>> attention_;
  // DecodeBatch's stacked memory of the last batch size, kept between calls
  // so a step gathers the rows' states into it instead of allocating a
  // zeroed memory and copying twice; replaced by a call of another size,
  // dropped by SetAttention. It holds the last batch's states once more
  // (outside any session's accounting), as the per-step copy did while it ran.
  mutable absl::Mutex stacked_mu_;
  mutable std::unique_ptr<Memory> stacked_ ABSL_GUARDED_BY(stacked_mu_);
  std::shared_ptr<const LoraAdapters> lora_;
  bool checkpointing_ = false;
  struct FusedLayer {
    at::Tensor qkv, qkv_bias;  // [(Hq + 2 Hkv) D, H], [(Hq + 2 Hkv) D] or undefined
    at::Tensor gate_up;        // [2 I, H]
  };
  std::vector<FusedLayer> fused_;  // empty until FuseProjections
};

}  // namespace linearize::model
