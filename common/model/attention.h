// The pluggable attention of a decoder layer. The layer projects the hidden
// states to q/k/v and applies RoPE; an AttentionLayer turns (q, k, v) into
// the per-head outputs that the layer's o_proj then mixes. The softmax teacher
// is one implementation; linear and hybrid attentions are others, reusing the
// same projections. What an attention remembers between calls (a KV cache, a
// recurrent state) is its AttentionState.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace linearize::model {

// One layer's memory of the tokens it has seen. Owned by a Memory.
class AttentionState {
 public:
  virtual ~AttentionState() = default;
  // A deep copy (forking a session).
  virtual std::unique_ptr<AttentionState> Clone() const = 0;
  // Bytes of tensor storage held (allocated capacity, not only what is used).
  virtual int64_t bytes() const = 0;

  // The tensors that make up the state, under stable names, on the state's
  // device (used part only): what a snapshot or a spill file stores. A
  // fixed-size recurrent state exports its own tensors, not copies: writing
  // into them updates the state (LlamaModel::DecodeBatch does).
  virtual std::vector<std::pair<std::string, at::Tensor>> Export() const = 0;
  // Replaces the state with what Export gave, copying onto this state's
  // device and dtype. The names must be Export's; shapes must equal this
  // state's except along a dimension that grows with the context (a KV
  // cache's length). Throws c10::Error naming the tensor at fault; on error
  // the state is unchanged.
  virtual void Import(const std::vector<std::pair<std::string, at::Tensor>>& tensors) = 0;
};

// Everything a layer offers its attention. q/k/v are what Forward(q, k, v)
// takes; the rest serve attentions that need more (Lizard's gated branch
// reads q/k before RoPE and computes its gate from the layer's input).
struct AttentionInputs {
  at::Tensor q, k, v;          // [B, Hq, T, D], [B, Hkv, T, D] x2; RoPE applied to q, k
  at::Tensor q_nope, k_nope;   // the same q, k before RoPE
  at::Tensor hidden;           // [B, T, H]: the layer's normalised input
};

class AttentionLayer {
 public:
  virtual ~AttentionLayer() = default;
  virtual std::string_view name() const = 0;

  // q: [B, Hq, T, D]; k, v: [B, Hkv, T, D], RoPE already applied, for the
  // tokens at positions position .. position+T-1. `state` holds the earlier
  // tokens and is updated with these; nullptr means there are none and
  // nothing is kept. Returns [B, Hq, T, D] in q's dtype. Throws c10::Error
  // on shape mismatches (LlamaModel::Forward turns it into a Status).
  virtual at::Tensor Forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             AttentionState* state, int64_t position) const = 0;

  // The same with every input the layer has; the default calls Forward(q,
  // k, v). LlamaModel calls this one.
  virtual at::Tensor Forward(const AttentionInputs& in, AttentionState* state,
                             int64_t position) const {
    return Forward(in.q, in.k, in.v, state, position);
  }

  // Whether Forward(AttentionInputs) reads `hidden`; when not, the model may
  // fold the input norm into the q/k/v product and leave hidden undefined.
  virtual bool needs_hidden() const { return false; }

  // An empty state for `batch` sequences; `capacity` is a hint of how many
  // tokens will be held (0: the implementation's default).
  virtual std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t capacity,
                                                   const at::TensorOptions& options) const = 0;
};

}  // namespace linearize::model
