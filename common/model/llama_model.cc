#include "common/model/llama_model.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "common/model/mlp.h"
#include "common/model/softmax_attention.h"
#include "kernels/gemv/gemv.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/swiglu/swiglu.h"

namespace linearize::model {

using kernels::Linear;

LlamaModel::LlamaModel(io::ModelConfig config, ModelWeights weights, RotaryEmbedding rope)
    : config_(std::move(config)), weights_(std::move(weights)), rope_(std::move(rope)) {}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(io::ModelConfig config,
                                                               ModelWeights weights) {
  if (absl::Status s = ValidateWeights(config, weights); !s.ok()) return s;
  // A model of some layers has no embeddings: its first layer's norm says.
  const std::optional<LayerRange>& held = weights.only_layers;
  const at::Tensor& first =
      held ? weights.layers[static_cast<size_t>(held->first)].input_norm : weights.embed;
  const std::string first_name =
      held ? absl::StrCat("model.layers.", held->first, ".input_layernorm.weight")
           : "model.embed_tokens.weight";
  const at::ScalarType dtype = first.scalar_type();
  const c10::Device device = first.device();
  if (!at::isFloatingType(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights must be floating point, got ", c10::toString(dtype)));
  }
  ModelWeights view = weights;
  for (const WeightSpec& spec : WeightSpecs(config, &view)) {
    const at::Tensor& t = *spec.slot;
    if (t.defined() && (t.scalar_type() != dtype || t.device() != device)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", spec.hf_name, " is ", c10::toString(t.scalar_type()), " on ",
          t.device().str(), " but ", first_name, " is ", c10::toString(dtype), " on ",
          device.str(), "; all weights must share dtype and device"));
    }
  }
  absl::StatusOr<RotaryEmbedding> rope = RotaryEmbedding::Create(config, weights.rope_freq_factors);
  if (!rope.ok()) return rope.status();
  rope->To(device);
  if (device.is_cuda()) {
    // SDPA's cuDNN backend builds an execution plan per KV length, so a KV
    // cache decode (a new length every step) rebuilt one per layer per token:
    // an 8B teacher decoded 12 tokens/s with it and 84 without (H100,
    // bench/results/decode_8b_h100.md). Flash and memory-efficient attention
    // need no plan. The switch is process-wide, as PyTorch's flag is.
    at::globalContext().setSDPUseCuDNN(false);
  }
  auto model = std::unique_ptr<LlamaModel>(
      new LlamaModel(std::move(config), std::move(weights), *std::move(rope)));
  model->dtype_ = dtype;
  model->device_ = device;
  const io::ModelConfig& c = model->config_;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    model->attention_.push_back(std::make_unique<SoftmaxAttention>(
        c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.sliding_window));
  }
  return model;
}

void LlamaModel::SetAttention(int64_t layer, std::unique_ptr<AttentionLayer> attention) {
  attention_.at(static_cast<size_t>(layer)) = std::move(attention);
  absl::MutexLock lock(&stacked_mu_);
  stacked_.reset();  // its states were made by the old attention
}

std::unique_ptr<Memory> LlamaModel::NewMemory(int64_t batch, int64_t capacity) const {
  std::vector<std::unique_ptr<AttentionState>> layers;
  const auto options = at::TensorOptions().dtype(dtype()).device(device());
  for (const auto& attention : attention_) {
    layers.push_back(attention->NewState(batch, capacity, options));
  }
  return std::make_unique<Memory>(std::move(layers), batch);
}

absl::Status LlamaModel::CheckInput(const at::Tensor& ids, const Memory* memory) const {
  if (const std::optional<LayerRange>& held = weights_.only_layers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model holds only the weights of layers [", held->first, ", ", held->end(), ") of ",
        num_layers(), " (loaded with a layer range): it runs those layers on hidden states "
        "(ForwardLayers), not on token ids"));
  }
  if (!ids.defined() || ids.dim() != 2 || ids.size(0) < 1 || ids.size(1) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ids must be [B, T] with B, T >= 1, got ",
        ids.defined() ? ShapeString(ids.sizes()) : std::string("an undefined tensor")));
  }
  if (ids.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError(
        absl::StrCat("ids must be int64, got ", c10::toString(ids.scalar_type())));
  }
  if (memory != nullptr) {
    if (memory->batch() != ids.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("ids have batch ", ids.size(0),
                                                     " but the memory holds ", memory->batch(),
                                                     " sequences"));
    }
    if (static_cast<int64_t>(memory->num_layers()) != num_layers()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the memory has ", memory->num_layers(), " layers, the model ", num_layers()));
    }
  }
  const auto [min_id, max_id] = at::aminmax(ids);
  const int64_t lo = min_id.item<int64_t>();
  const int64_t hi = max_id.item<int64_t>();
  if (lo < 0 || hi >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", lo < 0 ? lo : hi, " is outside the vocabulary [0, ", vocab_size(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LlamaModel::ForwardHidden(const at::Tensor& ids,
                                                     Memory* memory) const {
  try {
    if (absl::Status s = CheckInput(ids, memory); !s.ok()) return s;
    return HiddenUnchecked(ids.to(device()), memory);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::Embed(const at::Tensor& ids) const {
  try {
    if (absl::Status s = CheckInput(ids, nullptr); !s.ok()) return s;
    return at::embedding(weights_.embed, ids.to(device()));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("embedding failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::ForwardLayers(const at::Tensor& hidden, int64_t first,
                                                     int64_t count) const {
  const io::ModelConfig& c = config_;
  if (first < 0 || count < 0 || first + count > c.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layers [", first, ", ", first + count,
                                                   ") are outside the model's ",
                                                   c.num_hidden_layers, " layers"));
  }
  if (const std::optional<LayerRange>& held = weights_.only_layers;
      held && count > 0 && !(held->contains(first) && held->contains(first + count - 1))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "layers [", first, ", ", first + count, ") are not loaded: the model holds only layers [",
        held->first, ", ", held->end(), ") (loaded with a layer range)"));
  }
  if (hidden.dim() != 3 || hidden.size(2) != c.hidden_size || hidden.size(1) < 1) {
    return absl::InvalidArgumentError(absl::StrCat("hidden states must be [B, T, ", c.hidden_size,
                                                   "], got ", ShapeString(hidden.sizes())));
  }
  try {
    // A fused model may accumulate into its input; the caller's stays intact.
    at::Tensor x = hidden.to(device(), dtype());
    if (fused() && x.is_same(hidden)) x = x.clone();
    const auto [cos, sin] = rope_.CosSin(0, x.size(1), dtype());
    for (int64_t i = first; i < first + count; ++i) x = Layer(i, x, cos, sin, nullptr, 0);
    return x;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> LlamaModel::Forward(const at::Tensor& ids, Memory* memory,
                                               Logits which) const {
  absl::StatusOr<at::Tensor> hidden = ForwardHidden(ids, memory);
  if (!hidden.ok()) return hidden.status();
  try {
    const int64_t t = hidden->size(1);
    return LmHead(which == Logits::kLast ? hidden->narrow(1, t - 1, 1) : *hidden);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
}

bool LlamaModel::recurrent() const {
  for (const auto& a : attention_) {
    if (dynamic_cast<const SoftmaxAttention*>(a.get()) != nullptr) return false;
  }
  return true;
}

absl::StatusOr<at::Tensor> LlamaModel::DecodeBatch(const at::Tensor& ids,
                                                   std::span<Memory* const> memories) const {
  const auto n = static_cast<int64_t>(memories.size());
  if (!recurrent()) {
    return absl::FailedPreconditionError(
        "DecodeBatch: the model has softmax layers (KV caches of different lengths cannot be "
        "stacked)");
  }
  if (!ids.defined() || ids.dim() != 1 || ids.size(0) != n || n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeBatch: ids must be [", n, "] for ", n, " memories"));
  }
  // The ids' range once, then each memory's shape (CheckInput with a memory
  // would scan the ids again per memory).
  if (absl::Status s = CheckInput(ids.view({n, 1}), nullptr); !s.ok()) return s;
  for (Memory* m : memories) {
    if (m->batch() != 1 || static_cast<int64_t>(m->num_layers()) != num_layers()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DecodeBatch: every memory must hold 1 sequence of ", num_layers(), " layers, got ",
          m->batch(), " of ", m->num_layers()));
    }
  }
  // The stacked memory of the last call when it has n rows (one call at a
  // time takes it; a concurrent call makes its own).
  std::unique_ptr<Memory> stacked;
  {
    absl::MutexLock lock(&stacked_mu_);
    if (stacked_ != nullptr && stacked_->batch() == n) stacked = std::move(stacked_);
  }
  try {
    // Gather the rows' states into the stacked memory's own tensors (Export
    // gives a recurrent state's own tensors), step them together, then write
    // each row back into its own state tensors, one multi-tensor copy per
    // state field rather than one copy per tensor of every row.
    if (stacked == nullptr) stacked = NewMemory(n);
    std::vector<std::vector<Memory::LayerTensors>> rows;
    rows.reserve(static_cast<size_t>(n));
    std::vector<int64_t> positions;
    for (Memory* m : memories) {
      rows.push_back(m->Export());
      positions.push_back(m->position());
    }
    const std::vector<Memory::LayerTensors> into = stacked->Export();
    for (size_t l = 0; l < into.size(); ++l) {
      for (size_t k = 0; k < into[l].size(); ++k) {
        std::vector<at::Tensor> parts;
        for (const auto& row : rows) {
          if (row[l].size() != into[l].size() || row[l][k].first != into[l][k].first) {
            return absl::InvalidArgumentError(absl::StrCat(
                "DecodeBatch: layer ", l, ": a memory's state has other tensors than ",
                into[l][k].first));
          }
          const at::Tensor& part = row[l][k].second;
          if (part.dim() == 0 || part.size(0) != 1 ||
              part.sizes().slice(1) != into[l][k].second.sizes().slice(1) ||
              part.scalar_type() != into[l][k].second.scalar_type()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "DecodeBatch: layer ", l, ": state tensor ", into[l][k].first,
                " of a memory does not fit this model's"));
          }
          parts.push_back(part);
        }
        at::Tensor out = into[l][k].second;  // shares the state's storage
        at::cat_out(out, parts, 0);
      }
    }
    const at::Tensor pos = at::tensor(positions, at::TensorOptions().dtype(at::kLong));
    const at::Tensor hidden = HiddenUnchecked(ids.to(device()).view({n, 1}), stacked.get(), pos);
    const at::Tensor logits = LmHead(hidden).view({n, -1});
    const std::vector<Memory::LayerTensors> out = stacked->Export();
    const size_t fields = out.empty() ? 0 : out[0].size();
    for (size_t k = 0; k < fields; ++k) {  // one dtype per field: the fast multi-tensor path
      std::vector<at::Tensor> dst, src;
      for (size_t l = 0; l < out.size(); ++l) {
        for (int64_t j = 0; j < n; ++j) {
          dst.push_back(rows[static_cast<size_t>(j)][l][k].second);
          src.push_back(out[l][k].second.narrow(0, j, 1));
        }
      }
      at::_foreach_copy_(dst, src);
    }
    for (Memory* m : memories) m->Advance(1);
    absl::MutexLock lock(&stacked_mu_);
    stacked_ = std::move(stacked);
    return logits;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("DecodeBatch failed: ", e.what_without_backtrace()));
  }
}

at::Tensor LlamaModel::LmHead(const at::Tensor& hidden) const {
  TORCH_CHECK(weights_.lm_head.defined(),
              "LmHead: the model was loaded with a layer range and has no LM head");
  return Linear(hidden, weights_.lm_head).to(at::kFloat);
}

at::Tensor LlamaModel::Project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                               int64_t layer, LoraTarget target) const {
  at::Tensor y = Linear(x, w, bias);
  if (lora_ != nullptr) {
    if (at::Tensor delta = lora_->Delta(layer, target, x); delta.defined()) y = y + delta;
  }
  return y;
}

// One decoder layer run without keeping its activations: the forward runs
// with autograd off and saves only the input; the backward recomputes the
// layer with autograd on and backpropagates through it. Gradients of
// parameters inside the layer (LoRA) accumulate into their .grad directly,
// as in PyTorch's reentrant checkpoint, so this is for loss.backward().
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin, int64_t model,
                            int64_t layer) {
    ctx->save_for_backward({x, cos, sin});
    ctx->saved_data["model"] = model;
    ctx->saved_data["layer"] = layer;
    at::NoGradGuard no_grad;
    return reinterpret_cast<const LlamaModel*>(model)->Layer(layer, x, cos, sin, nullptr, 0);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto* model = reinterpret_cast<const LlamaModel*>(ctx->saved_data["model"].toInt());
    const at::Tensor x = saved[0].detach().requires_grad_(true);
    at::Tensor y;
    {
      at::AutoGradMode grad_on(true);
      y = model->Layer(ctx->saved_data["layer"].toInt(), x, saved[1], saved[2], nullptr, 0);
    }
    torch::autograd::backward({y}, {grad[0]});
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor LlamaModel::Layer(int64_t i, const at::Tensor& x, const at::Tensor& cos,
                             const at::Tensor& sin, Memory* memory, int64_t position) const {
  const io::ModelConfig& c = config_;
  const int64_t b = x.size(0);
  const int64_t t = x.size(1);
  const LayerWeights& l = weights_.layers[static_cast<size_t>(i)];
  at::Tensor h;
  // [B, T, heads * D] -> [B, heads, T, D]
  const auto [q_rows, k_rows, v_rows] = ProjectQkv(x, i, &h);
  const at::Tensor q = q_rows.view({b, t, c.num_attention_heads, c.head_dim}).transpose(1, 2);
  const at::Tensor k = k_rows.view({b, t, c.num_key_value_heads, c.head_dim}).transpose(1, 2);
  const at::Tensor v = v_rows.view({b, t, c.num_key_value_heads, c.head_dim}).transpose(1, 2);
  AttentionState* state = memory != nullptr ? memory->layer(static_cast<size_t>(i)) : nullptr;
  const auto [q_rotated, k_rotated] = kernels::RotaryQk(q, k, cos, sin);
  AttentionInputs in{q_rotated, k_rotated, v, q, k, h};
  const at::Tensor a = attention_[static_cast<size_t>(i)]->Forward(in, state, position);
  const at::Tensor y =
      AddProjected(x, a.transpose(1, 2).reshape({b, t, c.num_attention_heads * c.head_dim}),
                   l.o_proj, l.o_bias, i, LoraTarget::kO);
  return AddMlp(y, i);
}

std::array<at::Tensor, 3> LlamaModel::ProjectQkv(const at::Tensor& x, int64_t i,
                                                  at::Tensor* h) const {
  const LayerWeights& l = weights_.layers[static_cast<size_t>(i)];
  const double eps = config_.rms_norm_eps;
  if (fused_.empty()) {
    *h = kernels::RmsNorm(x, l.input_norm, eps);
    return {Project(*h, l.q_proj, l.q_bias, i, LoraTarget::kQ),
            Project(*h, l.k_proj, l.k_bias, i, LoraTarget::kK),
            Project(*h, l.v_proj, l.v_bias, i, LoraTarget::kV)};
  }
  const FusedLayer& f = fused_[static_cast<size_t>(i)];
  at::Tensor qkv;
  if (lora_ == nullptr && !attention_[static_cast<size_t>(i)]->needs_hidden()) {
    qkv = kernels::NormLinear(x, l.input_norm, eps, f.qkv, f.qkv_bias);
  } else {
    *h = kernels::RmsNorm(x, l.input_norm, eps);
    qkv = Linear(*h, f.qkv, f.qkv_bias);
  }
  const int64_t nq = l.q_proj.size(0), nkv = l.k_proj.size(0);
  std::array<at::Tensor, 3> out = {qkv.narrow(-1, 0, nq), qkv.narrow(-1, nq, nkv),
                                   qkv.narrow(-1, nq + nkv, nkv)};
  if (lora_ != nullptr) {
    const LoraTarget targets[3] = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV};
    for (size_t j = 0; j < out.size(); ++j) {
      if (at::Tensor delta = lora_->Delta(i, targets[j], *h); delta.defined()) {
        out[j] = out[j] + delta;
      }
    }
  }
  return out;
}

at::Tensor LlamaModel::AddProjected(const at::Tensor& residual, const at::Tensor& x,
                                    const at::Tensor& w, const at::Tensor& bias, int64_t layer,
                                    std::optional<LoraTarget> target) const {
  if (fused_.empty()) {
    return residual + (target ? Project(x, w, bias, layer, *target) : Linear(x, w, bias));
  }
  // One GEMM with beta = 1 adds the residual in its epilogue: a kernel less
  // per projection, which a batch-1 decode step (launch-bound) feels. Out of
  // place, addmm first copies the residual into its result; when nothing
  // can need the residual again (no autograd, no checkpointing keeping the
  // layer's input) the GEMM accumulates into it instead.
  const at::Tensor x2 = x.reshape({-1, x.size(-1)});
  at::Tensor y;
  if (!at::GradMode::is_enabled() && !checkpointing_ && residual.is_contiguous()) {
    y = residual;
    kernels::AddLinear(y, x2, w);
  } else {
    y = at::addmm(residual.reshape({-1, residual.size(-1)}), x2, w.t()).view(residual.sizes());
  }
  if (bias.defined()) y = y + bias;
  if (target && lora_ != nullptr) {
    if (at::Tensor delta = lora_->Delta(layer, *target, x); delta.defined()) y = y + delta;
  }
  return y;
}

at::Tensor LlamaModel::AddMlp(const at::Tensor& residual, int64_t i) const {
  const LayerWeights& l = weights_.layers[static_cast<size_t>(i)];
  const double eps = config_.rms_norm_eps;
  if (fused_.empty()) {
    return residual +
           SwiGlu(kernels::RmsNorm(residual, l.post_norm, eps), l.gate_proj, l.up_proj, l.down_proj);
  }
  // Norm, gate/up product and SwiGLU gate: one kernel at decode batch sizes.
  const at::Tensor gated =
      kernels::NormGateUp(residual, l.post_norm, eps, fused_[static_cast<size_t>(i)].gate_up);
  return AddProjected(residual, gated, l.down_proj, {}, i, std::nullopt);
}

void LlamaModel::FuseProjections() {
  if (!fused_.empty()) return;
  at::NoGradGuard no_grad;
  for (LayerWeights& l : weights_.layers) {
    FusedLayer f;
    if (!l.q_proj.defined()) {  // outside only_layers: nothing to fuse
      fused_.push_back(std::move(f));
      continue;
    }
    const int64_t nq = l.q_proj.size(0), nkv = l.k_proj.size(0), inner = l.gate_proj.size(0);
    // A model made from a fused model's weights finds them back to back.
    f.qkv = AdjacentRows({l.q_proj, l.k_proj, l.v_proj});
    if (!f.qkv.defined()) f.qkv = at::cat({l.q_proj, l.k_proj, l.v_proj});
    l.q_proj = f.qkv.narrow(0, 0, nq);
    l.k_proj = f.qkv.narrow(0, nq, nkv);
    l.v_proj = f.qkv.narrow(0, nq + nkv, nkv);
    if (l.q_bias.defined() || l.k_bias.defined() || l.v_bias.defined()) {
      const auto bias = [&](const at::Tensor& b, int64_t n) {
        return b.defined() ? b : at::zeros({n}, f.qkv.options());
      };
      f.qkv_bias = at::cat({bias(l.q_bias, nq), bias(l.k_bias, nkv), bias(l.v_bias, nkv)});
      at::Tensor* slots[3] = {&l.q_bias, &l.k_bias, &l.v_bias};
      const int64_t starts[3] = {0, nq, nq + nkv}, sizes[3] = {nq, nkv, nkv};
      for (int j = 0; j < 3; ++j) {
        if (slots[j]->defined()) *slots[j] = f.qkv_bias.narrow(0, starts[j], sizes[j]);
      }
    }
    f.gate_up = AdjacentRows({l.gate_proj, l.up_proj});
    if (!f.gate_up.defined()) f.gate_up = at::cat({l.gate_proj, l.up_proj});
    l.gate_proj = f.gate_up.narrow(0, 0, inner);
    l.up_proj = f.gate_up.narrow(0, inner, inner);
    fused_.push_back(std::move(f));
  }
}

at::Tensor LlamaModel::HiddenUnchecked(const at::Tensor& ids, Memory* memory,
                                       const at::Tensor& row_positions) const {
  const io::ModelConfig& c = config_;
  const int64_t t = ids.size(1);
  const int64_t position = memory != nullptr ? memory->position() : 0;
  const auto [cos, sin] = row_positions.defined() ? rope_.CosSinRows(row_positions, dtype())
                                                  : rope_.CosSin(position, t, dtype());

  at::Tensor x = at::embedding(weights_.embed, ids);  // [B, T, H]
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    // Checkpointing needs an input that carries gradient (not the first
    // layer's embedding of frozen weights) and no state to update.
    if (checkpointing_ && memory == nullptr && at::GradMode::is_enabled() && x.requires_grad()) {
      x = CheckpointedLayer::apply(x, cos, sin, reinterpret_cast<int64_t>(this), i);
    } else {
      x = Layer(i, x, cos, sin, memory, position);
    }
  }
  if (memory != nullptr) memory->Advance(t);
  return kernels::RmsNorm(x, weights_.final_norm, c.rms_norm_eps);
}

}  // namespace linearize::model
