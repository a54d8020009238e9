#include "common/model/gguf_weights.h"

#include <ATen/ATen.h>

#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace linearize::model {
namespace {

// ggml dims are fastest-varying first; PyTorch's shape is the reverse.
std::vector<int64_t> RowMajorShape(const io::GgufTensor& t) {
  return {t.dims.rbegin(), t.dims.rend()};
}

absl::StatusOr<at::Tensor> Dequantize(const io::GgufTensor& t) {
  if (!io::IsSupportedGgmlType(t.type)) {
    return absl::UnimplementedError(absl::StrCat("type ", std::string(io::GgmlTypeName(t.type)),
                                                 " is not supported"));
  }
  at::Tensor out = at::empty({t.numel()}, at::kFloat);
  absl::Status s = io::DequantizeToF32(t, std::span<float>(out.data_ptr<float>(),
                                                           static_cast<size_t>(t.numel())));
  if (!s.ok()) return s;
  return out.view(RowMajorShape(t));
}

// Both q and k are permuted in llama.cpp's LlamaModel (and so Mistral);
// Qwen2's conversion leaves them alone.
bool PermutesQk(const io::ModelConfig& config) {
  return config.architecture == "llama" || config.architecture == "mistral";
}

}  // namespace

at::Tensor UnpermuteQk(const at::Tensor& w, int64_t heads) {
  // transformers' _reverse_permute_weights: reshape(n_head, dim, 2, ...),
  // swap axes 1 and 2, reshape back.
  const int64_t half = w.size(0) / heads / 2;
  std::vector<int64_t> split = {heads, half, 2};
  for (int64_t d = 1; d < w.dim(); ++d) split.push_back(w.size(d));
  return w.reshape(split).transpose(1, 2).reshape(w.sizes()).contiguous();
}

absl::StatusOr<ModelWeights> LoadGgufWeights(const io::GgufFile& gguf,
                                             const io::ModelConfig& config,
                                             const WeightOptions& options,
                                             const std::optional<LayerRange>& layers) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": ", s.message()));
  }
  if (layers) {
    if (absl::Status s = ValidateLayerRange(config, *layers); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": ", s.message()));
    }
  }
  ModelWeights weights;
  const bool permute = PermutesQk(config);
  for (const WeightSpec& spec : WeightSpecs(config, &weights)) {
    if (!HoldsTensor(layers, spec)) continue;  // left undequantized (the file is only mapped)
    const io::GgufTensor* t = gguf.FindTensor(spec.gguf_name);
    if (t == nullptr) {
      if (spec.slot == &weights.lm_head) continue;  // tied: set below
      return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": missing tensor ",
                                                     spec.gguf_name, " (", spec.hf_name,
                                                     ", expected shape ",
                                                     ShapeString(spec.shape), ")"));
    }
    const std::vector<int64_t> shape = RowMajorShape(*t);
    if (at::IntArrayRef(shape) != at::IntArrayRef(spec.shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          gguf.name(), ": tensor ", spec.gguf_name, " has shape ", ShapeString(shape),
          " (ggml dims [", absl::StrJoin(t->dims, ", "), "]), expected ",
          ShapeString(spec.shape), " from the metadata"));
    }
    absl::StatusOr<at::Tensor> w = Dequantize(*t);
    if (!w.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": tensor ", spec.gguf_name,
                                                     ": ", w.status().message()));
    }
    at::Tensor value = *std::move(w);
    if (permute) {
      const bool is_q = spec.gguf_name.ends_with(".attn_q.weight") ||
                        spec.gguf_name.ends_with(".attn_q.bias");
      const bool is_k = spec.gguf_name.ends_with(".attn_k.weight") ||
                        spec.gguf_name.ends_with(".attn_k.bias");
      if (is_q) value = UnpermuteQk(value, config.num_attention_heads);
      if (is_k) value = UnpermuteQk(value, config.num_key_value_heads);
    }
    *spec.slot = value.to(options.device, options.dtype).contiguous();
  }
  if (!weights.lm_head.defined()) weights.lm_head = weights.embed;
  weights.only_layers = layers;

  if (const io::GgufTensor* t = gguf.FindTensor("rope_freqs.weight")) {
    absl::StatusOr<at::Tensor> f = Dequantize(*t);
    if (!f.ok() || f->dim() != 1 || f->size(0) != config.head_dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          gguf.name(), ": tensor rope_freqs.weight: expected shape [", config.head_dim / 2,
          "] of a supported type", f.ok() ? "" : absl::StrCat(" (", f.status().message(), ")")));
    }
    weights.rope_freq_factors = *std::move(f);  // stays float32 on the CPU for RoPE
  }
  return weights;
}

}  // namespace linearize::model
