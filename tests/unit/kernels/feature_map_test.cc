// Feature maps: hedgehog against a hand-written float64 loop, elu+1,
// grouped-query expansion of key features, argument errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/feature_map/feature_map.h"
#include "tests/unit/kernels/attention_test_util.h"

namespace linearize::kernels {
namespace {

using testing::ErrorOf;
using testing::RelErr;

TEST(FeatureMap, HedgehogMatchesHandWrittenSoftmaxes) {
  at::manual_seed(1);
  const int64_t b = 2, h = 3, t = 4, d = 5, f = 6;
  const at::Tensor x = at::randn({b, h, t, d}, at::kDouble);
  const at::Tensor w = at::randn({h, d, f}, at::kDouble);
  const at::Tensor phi = HedgehogFeatureMap(x, w);
  ASSERT_EQ(phi.sizes(), at::IntArrayRef({b, h, t, 2 * f}));
  const auto xa = x.accessor<double, 4>();
  const auto wa = w.accessor<double, 3>();
  const auto pa = phi.accessor<double, 4>();
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t hi = 0; hi < h; ++hi) {
      for (int64_t ti = 0; ti < t; ++ti) {
        std::vector<double> logit(f, 0.0);
        for (int64_t fi = 0; fi < f; ++fi) {
          for (int64_t di = 0; di < d; ++di) logit[fi] += xa[bi][hi][ti][di] * wa[hi][di][fi];
        }
        double pos = 0, neg = 0;
        for (double l : logit) {
          pos += std::exp(l);
          neg += std::exp(-l);
        }
        for (int64_t fi = 0; fi < f; ++fi) {
          EXPECT_NEAR(pa[bi][hi][ti][fi], std::exp(logit[fi]) / pos, 1e-14);
          EXPECT_NEAR(pa[bi][hi][ti][f + fi], std::exp(-logit[fi]) / neg, 1e-14);
        }
      }
    }
  }
}

TEST(FeatureMap, EluPlusOneIsPositiveAndExact) {
  const at::Tensor x = at::linspace(-30, 3, 67, at::kDouble);
  const at::Tensor phi = EluPlusOneFeatureMap(x);
  EXPECT_GT(phi.min().item<double>(), 0.0);
  const at::Tensor expect = at::where(x > 0, x + 1, at::exp(x));
  EXPECT_LT((phi - expect).abs().max().item<double>(), 1e-15);
}

TEST(FeatureMap, KeyFeaturesExpandGroupsLikeRepeatedWeights) {
  at::manual_seed(2);
  const int64_t hq = 4, hkv = 2, d = 3, f = 2;
  const at::Tensor k = at::randn({2, hkv, 5, d}, at::kDouble);
  FeatureMaps per_kv = testing::RandomHedgehog(hq, hkv, d, f);
  FeatureMaps per_q = per_kv;
  per_q.k_weight = at::repeat_interleave(per_kv.k_weight, hq / hkv, 0);
  const at::Tensor a = KeyFeatures(per_kv, k, hq);
  const at::Tensor b = KeyFeatures(per_q, k, hq);
  ASSERT_EQ(a.sizes(), at::IntArrayRef({2, hq, 5, 2 * f}));
  EXPECT_LT(RelErr(a, b), 1e-15);
  // Query head 3 reads kv head 3 / 2 = 1.
  EXPECT_LT(RelErr(a.select(1, 3), HedgehogFeatureMap(k, per_kv.k_weight).select(1, 1)), 1e-15);
  FeatureMaps elu;
  elu.kind = FeatureMapKind::kEluPlusOne;
  EXPECT_EQ(FeatureDim(elu, d), d);
  EXPECT_EQ(FeatureDim(per_kv, d), 2 * f);
  EXPECT_LT(RelErr(KeyFeatures(elu, k, hq).select(1, 2), EluPlusOneFeatureMap(k).select(1, 1)),
            1e-15);
}

TEST(FeatureMap, RejectsBadWeightsWithShapesInMessage) {
  const FeatureMaps good = testing::RandomHedgehog(4, 2, 8, 3);
  FeatureMaps bad = good;
  bad.k_weight = at::zeros({3, 8, 3}, at::kDouble);
  std::string msg = ErrorOf([&] { CheckFeatureMaps("op", bad, 4, 2, 8); });
  EXPECT_NE(msg.find("k_weight must be [4 or 2, 8, F]"), std::string::npos) << msg;
  bad = good;
  bad.k_weight = at::zeros({2, 8, 5}, at::kDouble);
  msg = ErrorOf([&] { CheckFeatureMaps("op", bad, 4, 2, 8); });
  EXPECT_NE(msg.find("same F"), std::string::npos) << msg;
  msg = ErrorOf([&] { HedgehogFeatureMap(at::zeros({1, 4, 2, 7}), good.q_weight); });
  EXPECT_NE(msg.find("weight must be [4, 7, F]"), std::string::npos) << msg;
  FeatureMaps elu;
  elu.kind = FeatureMapKind::kEluPlusOne;
  elu.q_weight = good.q_weight;
  msg = ErrorOf([&] { CheckFeatureMaps("op", elu, 4, 2, 8); });
  EXPECT_NE(msg.find("takes no weights"), std::string::npos) << msg;
  EXPECT_EQ(ErrorOf([&] { CheckFeatureMaps("op", good, 4, 2, 8); }), "");
}

}  // namespace
}  // namespace linearize::kernels
