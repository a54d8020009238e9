#include "common/model/weights.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace linearize::model {

bool HasQkvBias(const io::ModelConfig& config) {
  return config.attention_bias || config.architecture == "qwen2";
}

bool HasOutputBias(const io::ModelConfig& config) {
  return config.attention_bias && config.architecture != "qwen2";
}

std::vector<WeightSpec> WeightSpecs(const io::ModelConfig& c, ModelWeights* w) {
  const int64_t h = c.hidden_size;
  const int64_t qd = c.num_attention_heads * c.head_dim;
  const int64_t kvd = c.num_key_value_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  w->layers.resize(static_cast<size_t>(c.num_hidden_layers));
  std::vector<WeightSpec> specs;
  specs.push_back({"model.embed_tokens.weight", "token_embd.weight", {c.vocab_size, h}, &w->embed});
  const bool qkv_bias = HasQkvBias(c);
  const bool o_bias = HasOutputBias(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights& l = w->layers[static_cast<size_t>(i)];
    const std::string hf = absl::StrCat("model.layers.", i, ".");
    const std::string gg = absl::StrCat("blk.", i, ".");
    const size_t begin = specs.size();
    specs.push_back({hf + "input_layernorm.weight", gg + "attn_norm.weight", {h}, &l.input_norm});
    specs.push_back({hf + "self_attn.q_proj.weight", gg + "attn_q.weight", {qd, h}, &l.q_proj});
    specs.push_back({hf + "self_attn.k_proj.weight", gg + "attn_k.weight", {kvd, h}, &l.k_proj});
    specs.push_back({hf + "self_attn.v_proj.weight", gg + "attn_v.weight", {kvd, h}, &l.v_proj});
    if (qkv_bias) {
      specs.push_back({hf + "self_attn.q_proj.bias", gg + "attn_q.bias", {qd}, &l.q_bias});
      specs.push_back({hf + "self_attn.k_proj.bias", gg + "attn_k.bias", {kvd}, &l.k_bias});
      specs.push_back({hf + "self_attn.v_proj.bias", gg + "attn_v.bias", {kvd}, &l.v_bias});
    }
    specs.push_back(
        {hf + "self_attn.o_proj.weight", gg + "attn_output.weight", {h, qd}, &l.o_proj});
    if (o_bias) {
      specs.push_back({hf + "self_attn.o_proj.bias", gg + "attn_output.bias", {h}, &l.o_bias});
    }
    specs.push_back(
        {hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", {h}, &l.post_norm});
    specs.push_back(
        {hf + "mlp.gate_proj.weight", gg + "ffn_gate.weight", {inter, h}, &l.gate_proj});
    specs.push_back({hf + "mlp.up_proj.weight", gg + "ffn_up.weight", {inter, h}, &l.up_proj});
    specs.push_back(
        {hf + "mlp.down_proj.weight", gg + "ffn_down.weight", {h, inter}, &l.down_proj});
    for (size_t k = begin; k < specs.size(); ++k) specs[k].layer = i;
  }
  specs.push_back({"model.norm.weight", "output_norm.weight", {h}, &w->final_norm});
  specs.push_back({"lm_head.weight", "output.weight", {c.vocab_size, h}, &w->lm_head,
                   /*required=*/false});
  return specs;
}

absl::Status ValidateLayerRange(const io::ModelConfig& config, const LayerRange& layers) {
  if (layers.first < 0 || layers.count < 1 || layers.end() > config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layers [", layers.first, ", ", layers.end(), ") are not a non-empty range of the model's ",
        config.num_hidden_layers, " layers (num_hidden_layers)"));
  }
  return absl::OkStatus();
}

bool HoldsTensor(const std::optional<LayerRange>& layers, const WeightSpec& spec) {
  return !layers || (spec.layer >= 0 && layers->contains(spec.layer));
}

int64_t ParameterCount(const io::ModelConfig& config, const ModelWeights& weights) {
  ModelWeights view = weights;
  int64_t n = 0;
  for (const WeightSpec& spec : WeightSpecs(config, &view)) {
    const at::Tensor& t = *spec.slot;
    if (!t.defined() || (spec.slot == &view.lm_head && t.is_same(view.embed))) continue;
    n += t.numel();
  }
  return n;
}

absl::Status ValidateConfig(const io::ModelConfig& c) {
  auto positive = [](const char* field, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, " must be positive, got ", v));
  };
  for (const auto& [field, v] :
       {std::pair<const char*, int64_t>{"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_hidden_layers", c.num_hidden_layers},
        {"num_attention_heads", c.num_attention_heads},
        {"num_key_value_heads", c.num_key_value_heads},
        {"head_dim", c.head_dim}}) {
    if (absl::Status s = positive(field, v); !s.ok()) return s;
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads (", c.num_attention_heads,
        ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim must be even, got ", c.head_dim));
  }
  if (!(c.rms_norm_eps >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rms_norm_eps must be >= 0, got ", c.rms_norm_eps));
  }
  if (c.sliding_window && *c.sliding_window <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sliding_window must be positive, got ", *c.sliding_window));
  }
  return absl::OkStatus();
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status ValidateWeights(const io::ModelConfig& config, const ModelWeights& weights) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  if (static_cast<int64_t>(weights.layers.size()) != config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("weights have ", weights.layers.size(),
                                                   " layers, config num_hidden_layers is ",
                                                   config.num_hidden_layers));
  }
  if (weights.only_layers) {
    if (absl::Status s = ValidateLayerRange(config, *weights.only_layers); !s.ok()) return s;
  }
  ModelWeights view = weights;  // tensor handles: a cheap copy the table can point into
  for (const WeightSpec& spec : WeightSpecs(config, &view)) {
    if (!HoldsTensor(weights.only_layers, spec)) continue;
    const at::Tensor& t = *spec.slot;
    if (!t.defined()) {
      if (!spec.required) continue;
      return absl::InvalidArgumentError(absl::StrCat("missing tensor ", spec.hf_name,
                                                     " (expected shape ",
                                                     ShapeString(spec.shape), ")"));
    }
    if (t.sizes() != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", spec.hf_name, ": expected shape ",
                                                     ShapeString(spec.shape), ", got ",
                                                     ShapeString(t.sizes())));
    }
  }
  if (!weights.only_layers && !weights.lm_head.defined()) {
    return absl::InvalidArgumentError("missing tensor lm_head.weight (the model has no tied "
                                      "embeddings to use instead)");
  }
  return absl::OkStatus();
}

at::Tensor AdjacentRows(std::initializer_list<at::Tensor> parts) {
  const at::Tensor& first = *parts.begin();
  int64_t rows = 0;
  const char* next = nullptr;
  for (const at::Tensor& p : parts) {
    if (!p.defined() || p.dim() != 2 || !p.is_contiguous() || p.size(1) != first.size(1) ||
        p.scalar_type() != first.scalar_type() || !p.storage().is_alias_of(first.storage()) ||
        (next != nullptr && static_cast<const char*>(p.const_data_ptr()) != next)) {
      return {};
    }
    rows += p.size(0);
    next = static_cast<const char*>(p.const_data_ptr()) + p.nbytes();
  }
  return first.as_strided({rows, first.size(1)}, {first.size(1), 1}, first.storage_offset());
}

}  // namespace linearize::model
