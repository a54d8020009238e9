#include "common/convert/adamw.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace linearize::convert {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous));
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous));
  }
}

void AdamW::ZeroGrad() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

double AdamW::Step(double lr) {
  at::NoGradGuard no_grad;
  auto group_of = [&](const std::string& name) {
    return options_.clip_per_prefix ? name.substr(0, name.find('.')) : std::string();
  };
  std::map<std::string, double> sq;  // group -> sum of squared gradients
  double total = 0;
  for (const auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    const double s = p.grad().to(at::kDouble).pow(2).sum().item<double>();
    sq[group_of(name)] += s;
    total += s;
  }
  std::map<std::string, double> clip;
  for (const auto& [group, s] : sq) {
    const double norm = std::sqrt(s);
    clip[group] = options_.max_grad_norm > 0 && norm > options_.max_grad_norm
                      ? options_.max_grad_norm / (norm + 1e-6)
                      : 1.0;
  }
  ++steps_;
  const double bc1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    at::Tensor g = p.grad().defined() ? p.grad() * clip[group_of(params_[i].first)] : at::zeros_like(p);
    if (options_.weight_decay > 0) p.mul_(1 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    const at::Tensor denom = (exp_avg_sq_[i] / bc2).sqrt_().add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
  }
  ZeroGrad();
  return std::sqrt(total);
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::State() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + "/exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].first + "/exp_avg_sq", exp_avg_sq_[i]);
  }
  return out;
}

absl::Status AdamW::Restore(const std::vector<std::pair<std::string, at::Tensor>>& state,
                            int64_t steps) {
  if (state.size() != 2 * params_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state has ", state.size(),
                                                   " tensors, expected ", 2 * params_.size()));
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (int j = 0; j < 2; ++j) {
      const auto& [name, t] = state[2 * i + static_cast<size_t>(j)];
      at::Tensor& slot = j == 0 ? exp_avg_[i] : exp_avg_sq_[i];
      if (name != params_[i].first + (j == 0 ? "/exp_avg" : "/exp_avg_sq") ||
          t.sizes() != slot.sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("optimizer state tensor ", name, " does not match parameter ",
                         params_[i].first));
      }
      slot.copy_(t);
    }
  }
  steps_ = steps;
  return absl::OkStatus();
}

}  // namespace linearize::convert
