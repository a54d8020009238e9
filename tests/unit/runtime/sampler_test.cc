#include "common/runtime/sampler.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <set>

#include "gtest/gtest.h"

namespace linearize::runtime {
namespace {

Sampler Make(double temperature, int64_t top_k, double top_p, uint64_t seed) {
  absl::StatusOr<Sampler> s = Sampler::Create({temperature, top_k, top_p, seed});
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

int32_t Draw(Sampler& s, const at::Tensor& logits) {
  absl::StatusOr<int32_t> id = s.Sample(logits);
  EXPECT_TRUE(id.ok()) << id.status();
  return id.value_or(-1);
}

TEST(Sampler, GreedyIsArgmax) {
  Sampler s = Make(0.0, 0, 1.0, 7);
  EXPECT_TRUE(s.greedy());
  const at::Tensor logits = at::tensor({0.1f, 3.0f, -2.0f, 2.9f});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Draw(s, logits), 1);
  EXPECT_EQ(Draw(s, at::tensor({5.0f, 5.0f})), 0);  // first of equal maxima
}

TEST(Sampler, InvalidParamsNameTheField) {
  auto expect = [](SamplingParams p, const std::string& field) {
    absl::StatusOr<Sampler> s = Sampler::Create(p);
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(field), std::string::npos) << s.status();
  };
  expect({-0.5, 0, 1.0, 0}, "temperature");
  expect({NAN, 0, 1.0, 0}, "temperature");
  expect({INFINITY, 0, 1.0, 0}, "temperature");
  expect({1.0, -1, 1.0, 0}, "top_k");
  expect({1.0, 0, 0.0, 0}, "top_p");
  expect({1.0, 0, 1.5, 0}, "top_p");
  expect({1.0, 0, NAN, 0}, "top_p");
  Sampler s = Make(1.0, 0, 1.0, 0);
  EXPECT_FALSE(s.Sample(at::zeros({2, 3})).ok());
  EXPECT_FALSE(s.Sample(at::zeros({0})).ok());
}

TEST(Sampler, SameSeedSameSequence) {
  const at::Tensor logits = at::randn({1000}, at::TensorOptions().dtype(at::kFloat));
  Sampler a = Make(1.0, 50, 0.9, 42);
  Sampler b = Make(1.0, 50, 0.9, 42);
  Sampler c = Make(1.0, 50, 0.9, 43);
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(Draw(a, logits));
    sb.push_back(Draw(b, logits));
    sc.push_back(Draw(c, logits));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, TopKNeverLeavesTheKBest) {
  at::manual_seed(1);
  const at::Tensor logits = at::randn({500}) * 0.1;  // flat: many near-equal tokens
  const at::Tensor best = std::get<1>(logits.topk(5));
  std::set<int64_t> allowed;
  for (int i = 0; i < 5; ++i) allowed.insert(best[i].item<int64_t>());
  Sampler s = Make(2.0, 5, 1.0, 3);
  std::set<int32_t> seen;
  for (int i = 0; i < 3000; ++i) {
    const int32_t id = Draw(s, logits);
    ASSERT_TRUE(allowed.count(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 5u);  // and every one of them is reachable
}

TEST(Sampler, TopPKeepsTheSmallestSetWithTheMass) {
  at::manual_seed(2);
  const at::Tensor logits = at::randn({300}) * 2;
  const at::Tensor probs = at::softmax(logits.to(at::kDouble), 0);
  for (double p : {0.1, 0.5, 0.9, 0.99}) {
    Sampler s = Make(1.0, 0, p, 0);
    const auto dist = s.Distribution(logits);
    double mass = 0, total = 0;
    for (const auto& [id, q] : dist) {
      mass += probs[id].item<double>();
      total += q;
    }
    EXPECT_NEAR(total, 1.0, 1e-9);
    EXPECT_GE(mass, p - 1e-9) << p;
    EXPECT_LT(mass - probs[dist.back().first].item<double>(), p) << p;  // minimal
    // Kept tokens are the most likely ones, most likely first.
    for (size_t i = 1; i < dist.size(); ++i) {
      EXPECT_GE(probs[dist[i - 1].first].item<double>(), probs[dist[i].first].item<double>());
    }
    std::set<int32_t> kept;
    for (const auto& entry : dist) kept.insert(entry.first);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(kept.count(Draw(s, logits)));
  }
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  const at::Tensor logits = at::tensor({1.0f, 2.0f, 0.0f, 1.5f});
  for (double temperature : {1.0, 0.5}) {
    const at::Tensor probs = at::softmax(logits.to(at::kDouble) / temperature, 0);
    Sampler s = Make(temperature, 0, 1.0, 11);
    const int n = 40000;
    std::map<int32_t, int> counts;
    for (int i = 0; i < n; ++i) ++counts[Draw(s, logits)];
    for (int id = 0; id < 4; ++id) {
      const double p = probs[id].item<double>();
      // 5 standard deviations of a binomial frequency.
      EXPECT_NEAR(counts[id] / static_cast<double>(n), p, 5 * std::sqrt(p * (1 - p) / n))
          << "temperature " << temperature << " id " << id;
    }
  }
}

TEST(Sampler, DegenerateLogitsStillChoose) {
  Sampler s = Make(1.0, 0, 1.0, 0);
  EXPECT_EQ(Draw(s, at::full({3}, -INFINITY)), 0);
  const at::Tensor one = at::tensor({-INFINITY, 0.0f, -INFINITY});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Draw(s, one), 1);
}

}  // namespace
}  // namespace linearize::runtime

namespace linearize::runtime {
namespace {

TEST(Sampler, MinPDropsTokensFarBelowTheBest) {
  SamplingParams p;
  p.temperature = 1.0;
  p.min_p = 0.2;
  auto s = Sampler::Create(p);
  ASSERT_TRUE(s.ok());
  // Probabilities about 0.66, 0.24, 0.09, 0.01: min_p 0.2 keeps p >= 0.13.
  const at::Tensor logits = at::tensor({2.0f, 1.0f, 0.0f, -2.0f});
  const auto dist = s->Distribution(logits);
  ASSERT_EQ(dist.size(), 2u);
  EXPECT_EQ(dist[0].first, 0);
  EXPECT_EQ(dist[1].first, 1);
  EXPECT_NEAR(dist[0].second + dist[1].second, 1.0, 1e-12);
}

TEST(Sampler, RepetitionPenaltyFollowsHuggingFace) {
  SamplingParams p;  // greedy
  p.repetition_penalty = 2.0;
  auto s = Sampler::Create(p);
  ASSERT_TRUE(s.ok());
  const at::Tensor logits = at::tensor({3.0f, 2.0f, -1.0f});
  EXPECT_EQ(*s->Sample(logits), 0);
  s->Observe(0);  // 3 / 2 = 1.5 < 2: token 1 wins now
  EXPECT_EQ(*s->Sample(logits), 1);
  s->Observe(1);  // 1 vs 1.5: token 0 again; negative logits get more negative
  EXPECT_EQ(*s->Sample(logits), 0);
  auto bad = Sampler::Create({0.0, 0, 1.0, 0, 1.5, 1.0});
  EXPECT_NE(std::string(bad.status().message()).find("min_p"), std::string::npos);
  auto bad2 = Sampler::Create({0.0, 0, 1.0, 0, 0.0, 0.0});
  EXPECT_NE(std::string(bad2.status().message()).find("repetition_penalty"), std::string::npos);
}

TEST(Logprobs, MatchLogSoftmax) {
  const at::Tensor logits = at::tensor({1.0f, 3.0f, 2.0f, -1.0f});
  const TokenLogprobs lp = ComputeLogprobs(logits, 2, 2);
  const at::Tensor ref = at::log_softmax(logits, 0);
  EXPECT_FLOAT_EQ(lp.chosen, ref[2].item<float>());
  ASSERT_EQ(lp.top.size(), 2u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_FLOAT_EQ(lp.top[0].second, ref[1].item<float>());
}

}  // namespace
}  // namespace linearize::runtime
