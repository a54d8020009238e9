#include "common/runtime/sampler.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace linearize::runtime {
namespace {

std::vector<float> ToHost(const at::Tensor& logits) {
  const at::Tensor host = logits.detach().to(at::kCPU, at::kFloat).contiguous();
  const float* p = host.data_ptr<float>();
  return {p, p + host.numel()};
}

// First index of the largest value, NaN never chosen over a number.
int32_t Argmax(const std::vector<float>& v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[best] || (std::isnan(v[best]) && !std::isnan(v[i]))) {
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  }
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!std::isfinite(p.min_p) || p.min_p < 0 || p.min_p > 1) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0 ||
      p.repetition_penalty > 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repetition_penalty must be in (0, 10], got ", p.repetition_penalty));
  }
  return absl::OkStatus();
}

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& params) {
  if (absl::Status s = ValidateSamplingParams(params); !s.ok()) return s;
  return Sampler(params);
}

std::vector<float> Sampler::Penalized(const at::Tensor& logits) const {
  std::vector<float> host = ToHost(logits);
  const auto penalty = static_cast<float>(params_.repetition_penalty);
  for (int32_t id : seen_) {
    if (id < 0 || static_cast<size_t>(id) >= host.size()) continue;
    float& l = host[static_cast<size_t>(id)];
    l = l > 0 ? l / penalty : l * penalty;
  }
  return host;
}

std::vector<std::pair<int32_t, double>> Sampler::Distribution(const at::Tensor& logits) const {
  return Distribution(Penalized(logits));
}

std::vector<std::pair<int32_t, double>> Sampler::Distribution(
    const std::vector<float>& logits) const {
  if (logits.empty()) return {};
  if (greedy()) return {{Argmax(logits), 1.0}};
  // Candidates most likely first; ties by id so the order is deterministic.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto higher = [&](int32_t a, int32_t b) {
    const float la = std::isnan(logits[a]) ? -INFINITY : logits[a];
    const float lb = std::isnan(logits[b]) ? -INFINITY : logits[b];
    return la > lb || (la == lb && a < b);
  };
  const size_t k = params_.top_k > 0
                       ? std::min(logits.size(), static_cast<size_t>(params_.top_k))
                       : logits.size();
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    higher);
  order.resize(k);

  // Softmax of logits / temperature in double, shifted by the maximum.
  const double top = logits[order[0]];
  std::vector<double> probs(k);
  double total = 0;
  for (size_t i = 0; i < k; ++i) {
    const double z = (static_cast<double>(logits[order[i]]) - top) / params_.temperature;
    probs[i] = std::isnan(z) ? 0.0 : std::exp(z);
    total += probs[i];
  }
  // Logits that are all -inf (or hold +inf) leave nothing to normalise:
  // take the first candidate.
  if (!(total > 0) || !std::isfinite(total)) return {{order[0], 1.0}};
  // Top-p: the shortest prefix whose mass reaches top_p (at least one token).
  size_t keep = k;
  if (params_.top_p < 1.0) {
    double mass = 0;
    for (size_t i = 0; i < k; ++i) {
      mass += probs[i] / total;
      if (mass >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  // Min-p: relative to the most likely token (probs[0], the largest).
  if (params_.min_p > 0) {
    size_t i = 1;
    while (i < keep && probs[i] >= params_.min_p * probs[0]) ++i;
    keep = i;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += probs[i];
  std::vector<std::pair<int32_t, double>> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.emplace_back(order[i], probs[i] / kept);
  return out;
}

absl::StatusOr<int32_t> Sampler::Sample(const at::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 1 || logits.numel() == 0) {
    return absl::InvalidArgumentError("Sample: logits must be a non-empty [V] tensor");
  }
  const std::vector<float> host = Penalized(logits);
  if (greedy()) return Argmax(host);
  const std::vector<std::pair<int32_t, double>> dist = Distribution(host);
  // 53 random bits -> [0, 1): the same on every platform, unlike
  // std::uniform_real_distribution.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double cumulative = 0;
  for (const auto& [id, p] : dist) {
    cumulative += p;
    if (u < cumulative) return id;
  }
  return dist.back().first;  // rounding left u above the last sum
}

TokenLogprobs ComputeLogprobs(const at::Tensor& logits, int32_t chosen, int64_t top) {
  const at::Tensor lp = at::log_softmax(logits.detach().to(at::kCPU, at::kFloat), -1);
  TokenLogprobs out;
  out.chosen = lp[chosen].item<float>();
  if (top > 0) {
    const auto [values, ids] = at::topk(lp, std::min<int64_t>(top, lp.numel()));
    for (int64_t i = 0; i < values.numel(); ++i) {
      out.top.emplace_back(static_cast<int32_t>(ids[i].item<int64_t>()), values[i].item<float>());
    }
  }
  return out;
}

}  // namespace linearize::runtime
