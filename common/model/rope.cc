#include "common/model/rope.h"

#include <ATen/ATen.h>

#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace linearize::model {
namespace {

// transformers' _compute_llama3_parameters, op for op in float32.
at::Tensor Llama3Scaling(const at::Tensor& inv_freq, const io::RopeScaling& s) {
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  const at::Tensor wavelen = 2 * std::numbers::pi / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth =
      (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const at::Tensor medium =
      at::logical_not(wavelen < high_freq_wavelen) & at::logical_not(wavelen > low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

}  // namespace

absl::StatusOr<RotaryEmbedding> RotaryEmbedding::Create(const io::ModelConfig& config,
                                                        const at::Tensor& freq_factors) {
  const int64_t dim = config.head_dim;
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be positive and even for RoPE, got ", dim));
  }
  if (!(config.rope_theta > 0) || !std::isfinite(config.rope_theta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_theta must be positive, got ", config.rope_theta));
  }
  // 1 / base ** (arange(0, dim, 2) / dim), as transformers computes it.
  const at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim;
  at::Tensor inv_freq = 1.0 / at::pow(config.rope_theta, exponent);

  const io::RopeScaling& s = config.rope_scaling;
  if (freq_factors.defined()) {
    if (freq_factors.dim() != 1 || freq_factors.size(0) != dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope_freqs must have shape [", dim / 2, "], got [",
          freq_factors.dim() == 1 ? freq_factors.size(0) : -1, "]"));
    }
    inv_freq = inv_freq / freq_factors.to(at::kFloat).cpu();
  } else if (s.type == "llama3") {
    if (!(s.factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
        !(s.low_freq_factor > 0) || s.original_max_position_embeddings <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope_scaling (llama3): need factor > 0, high_freq_factor > low_freq_factor > 0 "
          "and original_max_position_embeddings > 0; got factor ", s.factor,
          ", low_freq_factor ", s.low_freq_factor, ", high_freq_factor ", s.high_freq_factor,
          ", original_max_position_embeddings ", s.original_max_position_embeddings));
    }
    inv_freq = Llama3Scaling(inv_freq, s);
  } else if (s.type == "linear") {
    if (!(s.factor > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rope_scaling (linear): factor must be > 0, got ", s.factor));
    }
    inv_freq = inv_freq / s.factor;
  } else if (!s.type.empty() && s.type != "default") {
    return absl::UnimplementedError(absl::StrCat(
        "rope_scaling type \"", s.type, "\" is not supported (default, linear, llama3)"));
  }
  return RotaryEmbedding(inv_freq.contiguous());
}

void RotaryEmbedding::To(const c10::Device& device) { inv_freq_ = inv_freq_.to(device); }

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::CosSin(int64_t start, int64_t length,
                                                          at::ScalarType dtype) const {
  const at::Tensor pos =
      at::arange(start, start + length, inv_freq_.options().dtype(at::kLong)).to(at::kFloat);
  const at::Tensor freqs = at::outer(pos, inv_freq_);  // [T, D/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);   // [T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::CosSinRows(const at::Tensor& positions,
                                                              at::ScalarType dtype) const {
  const at::Tensor pos = positions.to(inv_freq_.device(), at::kFloat);
  const at::Tensor freqs = at::outer(pos, inv_freq_);  // [B, D/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1).view({pos.size(0), 1, 1, -1});
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

}  // namespace linearize::model
