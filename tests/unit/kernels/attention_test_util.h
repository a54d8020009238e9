// Helpers for the attention kernel tests: random inputs, relative error, and
// a central-difference gradient check in float64.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernels/feature_map/feature_map.h"

namespace linearize::kernels::testing {

// The tensors here are tiny: intra-op threads only add OpenMP contention,
// which costs seconds per test on a loaded 2-core machine. Run single-threaded.
class SingleThreadEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { at::set_num_threads(1); }
};
inline ::testing::Environment* const kSingleThread =
    ::testing::AddGlobalTestEnvironment(new SingleThreadEnvironment);

// max |a - b| / max |b| (b the reference), in float64.
inline double RelErr(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  const at::Tensor ad = a.detach().to(at::kDouble), bd = b.detach().to(at::kDouble);
  const double scale = std::max(bd.abs().max().item<double>(), 1e-300);
  return (ad - bd).abs().max().item<double>() / scale;
}

inline at::Tensor Randn(at::IntArrayRef sizes, double scale = 1.0) {
  return at::randn(sizes, at::kDouble) * scale;
}

// Hedgehog maps with logits of order 1: weights N(0, 1/D).
inline FeatureMaps RandomHedgehog(int64_t hq, int64_t k_heads, int64_t d, int64_t f) {
  FeatureMaps m;
  m.kind = FeatureMapKind::kHedgehog;
  m.q_weight = Randn({hq, d, f}, 1.0 / std::sqrt(double(d)));
  m.k_weight = Randn({k_heads, d, f}, 1.0 / std::sqrt(double(d)));
  return m;
}

// Compares autograd gradients of sum(fn(inputs) * r) (r fixed random) with
// central differences, element by element. inputs are float64 leaves; returns
// the worst |analytic - numeric| / max(1, |numeric|).
inline double GradCheck(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& fn,
                        const std::vector<at::Tensor>& inputs, double h = 1e-6) {
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& x : inputs) leaves.push_back(x.detach().clone().requires_grad_(true));
  const at::Tensor y = fn(leaves);
  const at::Tensor r = at::randn(y.sizes(), at::kDouble);
  const at::Tensor loss = (y * r).sum();
  const std::vector<at::Tensor> grads =
      torch::autograd::grad({loss}, leaves, {}, std::nullopt, false, /*allow_unused=*/true);
  double worst = 0;
  const c10::NoGradGuard no_grad;
  std::vector<at::Tensor> probe;
  for (const at::Tensor& x : inputs) probe.push_back(x.detach().clone().contiguous());
  for (size_t t = 0; t < probe.size(); ++t) {
    double* p = probe[t].data_ptr<double>();
    const at::Tensor g = grads[t].defined() ? grads[t].contiguous() : at::zeros_like(probe[t]);
    const double* ga = g.data_ptr<double>();
    for (int64_t e = 0; e < probe[t].numel(); ++e) {
      const double keep = p[e];
      p[e] = keep + h;
      const double up = (fn(probe) * r).sum().item<double>();
      p[e] = keep - h;
      const double down = (fn(probe) * r).sum().item<double>();
      p[e] = keep;
      const double numeric = (up - down) / (2 * h);
      worst = std::max(worst, std::abs(ga[e] - numeric) / std::max(1.0, std::abs(numeric)));
    }
  }
  return worst;
}

// Gradients of sum(fn(inputs) * r) with respect to every input (zeros if unused).
inline std::vector<at::Tensor> Grads(
    const std::function<at::Tensor(const std::vector<at::Tensor>&)>& fn,
    const std::vector<at::Tensor>& inputs, const at::Tensor& r) {
  std::vector<at::Tensor> leaves;
  for (const at::Tensor& x : inputs) leaves.push_back(x.detach().clone().requires_grad_(true));
  std::vector<at::Tensor> g = torch::autograd::grad({(fn(leaves) * r).sum()}, leaves, {},
                                                    std::nullopt, false, /*allow_unused=*/true);
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i].defined()) g[i] = at::zeros_like(inputs[i]);
  }
  return g;
}

// The hybrid attentions' states (lolcats::State, lizard::State: a linear
// state kv, k_sum, and a window ring k_window, v_window, with position).
template <typename State>
State CloneState(const State& s) {
  return State{s.kv.clone(), s.k_sum.clone(), s.k_window.clone(), s.v_window.clone(),
               s.position.clone()};
}

// The linear state up to rounding, the ring and positions exactly.
template <typename State>
void ExpectCloseState(const State& a, const State& b, const std::string& what) {
  EXPECT_LT(RelErr(a.kv, b.kv), 1e-9) << what;
  EXPECT_LT(RelErr(a.k_sum, b.k_sum), 1e-9) << what;
  EXPECT_TRUE(at::equal(a.k_window, b.k_window)) << what;
  EXPECT_TRUE(at::equal(a.v_window, b.v_window)) << what;
  EXPECT_TRUE(at::equal(a.position, b.position)) << what;
}

// Runs `body` and returns the c10::Error message it throws ("" if none).
inline std::string ErrorOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const c10::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace linearize::kernels::testing
