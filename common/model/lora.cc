#include "common/model/lora.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace linearize::model {

std::string_view LoraTargetName(LoraTarget target) {
  switch (target) {
    case LoraTarget::kQ: return "q_proj";
    case LoraTarget::kK: return "k_proj";
    case LoraTarget::kV: return "v_proj";
    case LoraTarget::kO: return "o_proj";
  }
  return "?";
}

absl::StatusOr<LoraTarget> ParseLoraTarget(std::string_view name) {
  for (LoraTarget t : {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV, LoraTarget::kO}) {
    const std::string_view full = LoraTargetName(t);
    if (name == full || name == full.substr(0, 1)) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown LoRA target \"", std::string(name), "\"; expected q_proj, k_proj, v_proj or o_proj"));
}

at::Tensor LoraAdapters::Delta(int64_t layer, LoraTarget target, const at::Tensor& x) const {
  if (layer < 0 || layer >= static_cast<int64_t>(layers.size())) return at::Tensor();
  const LoraPair& p = layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  if (!p.a.defined()) return at::Tensor();
  at::Tensor in = x.to(p.a.scalar_type());
  if (training && dropout > 0) in = at::dropout(in, dropout, /*train=*/true);
  return (at::linear(at::linear(in, p.a), p.b) * scale).to(x.scalar_type());
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapters::Named() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const LoraPair& p = layers[i][static_cast<size_t>(t)];
      if (!p.a.defined()) continue;
      const std::string base = absl::StrCat("model.layers.", i, ".self_attn.",
                                            std::string(LoraTargetName(static_cast<LoraTarget>(t))));
      out.emplace_back(absl::StrCat(base, ".lora_A.weight"), p.a);
      out.emplace_back(absl::StrCat(base, ".lora_B.weight"), p.b);
    }
  }
  return out;
}

absl::StatusOr<LoraAdapters> NewLoraAdapters(const io::ModelConfig& config,
                                             const LoraOptions& options, uint64_t seed,
                                             c10::Device device) {
  if (options.rank < 1) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA rank must be >= 1, got ", options.rank));
  }
  if (!(options.alpha > 0) || !std::isfinite(options.alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA alpha must be > 0, got ", options.alpha));
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA dropout must be in [0, 1), got ", options.dropout));
  }
  LoraAdapters out;
  out.scale = options.alpha / static_cast<double>(options.rank);
  out.dropout = options.dropout;
  const int64_t h = config.hidden_size;
  const int64_t q_out = config.num_attention_heads * config.head_dim;
  const int64_t kv_out = config.num_key_value_heads * config.head_dim;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto fp32 = at::TensorOptions().dtype(at::kFloat);
  out.layers.resize(static_cast<size_t>(config.num_hidden_layers));
  for (auto& layer : out.layers) {
    for (LoraTarget t : options.targets) {
      const int64_t in = t == LoraTarget::kO ? q_out : h;
      const int64_t outd = t == LoraTarget::kQ ? q_out : t == LoraTarget::kO ? h : kv_out;
      // PEFT's default: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)).
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      LoraPair p;
      p.a = at::empty({options.rank, in}, fp32).uniform_(-bound, bound, gen).to(device);
      p.b = at::zeros({outd, options.rank}, fp32.device(device));
      p.a.set_requires_grad(true);
      p.b.set_requires_grad(true);
      layer[static_cast<size_t>(t)] = std::move(p);
    }
  }
  return out;
}

at::Tensor MergeLora(const at::Tensor& weight, const LoraPair& pair, double scale) {
  if (!pair.a.defined()) return weight;
  const at::Tensor delta = at::matmul(pair.b.detach(), pair.a.detach()) * scale;
  return (weight.to(at::kFloat) + delta).to(weight.scalar_type());
}

}  // namespace linearize::model
