// Plain causal linear attention: chunked == recurrent == the [T, T] reference
// in float64, gradients, argument errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/linear_attention/linear_attention.h"
#include "tests/unit/kernels/attention_test_util.h"

namespace linearize::kernels::linear_attention {
namespace {

using testing::ErrorOf;
using testing::GradCheck;
using testing::Grads;
using testing::Randn;
using testing::RelErr;

FeatureMaps Elu() {
  FeatureMaps m;
  m.kind = FeatureMapKind::kEluPlusOne;
  return m;
}

struct Qkv {
  at::Tensor q, k, v;
};

Qkv RandomQkv(int64_t b, int64_t hq, int64_t hkv, int64_t t, int64_t d) {
  return {Randn({b, hq, t, d}), Randn({b, hkv, t, d}), Randn({b, hkv, t, d})};
}

TEST(LinearAttention, ParallelMatchesReferenceForEveryLength) {
  at::manual_seed(10);
  const Options opt{/*chunk=*/16, /*eps=*/1e-6};
  for (const FeatureMaps& maps : {Elu(), testing::RandomHedgehog(4, 2, 8, 6)}) {
    for (int64_t t : {1, 5, 16, 37, 100}) {
      const Qkv x = RandomQkv(2, 4, 2, t, 8);
      const at::Tensor ref = ForwardReference(x.q, x.k, x.v, maps, opt);
      const at::Tensor par = ForwardParallel(x.q, x.k, x.v, maps, opt);
      EXPECT_LT(RelErr(par, ref), 1e-9) << "T=" << t;
      EXPECT_EQ(par.sizes(), x.q.sizes());
    }
  }
}

TEST(LinearAttention, DecodeMatchesReferenceAndPrefillState) {
  at::manual_seed(11);
  const Options opt{/*chunk=*/8, /*eps=*/1e-6};
  const FeatureMaps maps = testing::RandomHedgehog(4, 4, 8, 5);
  const int64_t t = 29;
  const Qkv x = RandomQkv(2, 4, 2, t, 8);
  State st = EmptyState(2, 4, FeatureDim(maps, 8), 8, x.q.options());
  std::vector<at::Tensor> ys;
  for (int64_t i = 0; i < t; ++i) {
    ys.push_back(
        DecodeStep(st, x.q.narrow(2, i, 1), x.k.narrow(2, i, 1), x.v.narrow(2, i, 1), maps, opt));
  }
  const at::Tensor rec = at::cat(ys, 2);
  EXPECT_LT(RelErr(rec, ForwardReference(x.q, x.k, x.v, maps, opt)), 1e-9);
  const PrefillResult pre = Prefill(x.q, x.k, x.v, maps, opt);
  EXPECT_LT(RelErr(pre.y, rec), 1e-9);
  EXPECT_LT(RelErr(pre.state.kv, st.kv), 1e-12);
  EXPECT_LT(RelErr(pre.state.k_sum, st.k_sum), 1e-12);
  EXPECT_EQ(st.kv.sizes(), at::IntArrayRef({2, 4, 10, 8}));  // independent of T
}

TEST(LinearAttention, PrefillThenDecodeContinuesTheSequence) {
  at::manual_seed(12);
  const Options opt{/*chunk=*/4, /*eps=*/1e-6};
  const FeatureMaps maps = Elu();
  const Qkv x = RandomQkv(1, 2, 1, 20, 4);
  PrefillResult pre =
      Prefill(x.q.narrow(2, 0, 13), x.k.narrow(2, 0, 13), x.v.narrow(2, 0, 13), maps, opt);
  std::vector<at::Tensor> ys{pre.y};
  for (int64_t i = 13; i < 20; ++i) {
    ys.push_back(DecodeStep(pre.state, x.q.narrow(2, i, 1), x.k.narrow(2, i, 1),
                            x.v.narrow(2, i, 1), maps, opt));
  }
  EXPECT_LT(RelErr(at::cat(ys, 2), ForwardReference(x.q, x.k, x.v, maps, opt)), 1e-9);
}

Qkv Slice(const Qkv& x, int64_t from, int64_t len) {
  return {x.q.narrow(2, from, len), x.k.narrow(2, from, len), x.v.narrow(2, from, len)};
}

TEST(LinearAttention, PrefillFromAStateEqualsOnePrefillAndDecodeSteps) {
  at::manual_seed(15);
  const Options opt{/*chunk=*/8, /*eps=*/1e-6};
  for (const FeatureMaps& maps : {Elu(), testing::RandomHedgehog(4, 2, 8, 6)}) {
    // First parts: 1, below the chunk, a multiple of it, not a multiple.
    // Second parts: 1, 2, above the chunk and not a multiple, a multiple.
    for (int64_t a : {1, 5, 16, 37}) {
      for (int64_t b : {1, 2, 21, 32}) {
        const std::string what = "A=" + std::to_string(a) + " B=" + std::to_string(b);
        const Qkv x = RandomQkv(2, 4, 2, a + b, 8);  // batch 2, GQA
        const PrefillResult whole = Prefill(x.q, x.k, x.v, maps, opt);
        const Qkv first = Slice(x, 0, a), second = Slice(x, a, b);
        const PrefillResult pa = Prefill(first.q, first.k, first.v, maps, opt);
        const State before{pa.state.kv.clone(), pa.state.k_sum.clone()};
        const PrefillResult pb = Prefill(second.q, second.k, second.v, maps, opt, &pa.state);
        EXPECT_LT(RelErr(pb.y, whole.y.narrow(2, a, b)), 1e-9) << what;
        EXPECT_LT(RelErr(pb.state.kv, whole.state.kv), 1e-9) << what;
        EXPECT_LT(RelErr(pb.state.k_sum, whole.state.k_sum), 1e-9) << what;
        EXPECT_TRUE(at::equal(pa.state.kv, before.kv) && at::equal(pa.state.k_sum, before.k_sum))
            << what << ": the initial state changed";
        // b DecodeSteps from the first part's state.
        State st{pa.state.kv.clone(), pa.state.k_sum.clone()};
        std::vector<at::Tensor> ys;
        for (int64_t i = 0; i < b; ++i) {
          const Qkv tok = Slice(second, i, 1);
          ys.push_back(DecodeStep(st, tok.q, tok.k, tok.v, maps, opt));
        }
        EXPECT_LT(RelErr(pb.y, at::cat(ys, 2)), 1e-9) << what;
        EXPECT_LT(RelErr(pb.state.kv, st.kv), 1e-9) << what;
        EXPECT_LT(RelErr(pb.state.k_sum, st.k_sum), 1e-9) << what;
      }
    }
  }
  // An empty prompt keeps the state; a state of the wrong shape is refused.
  const Qkv x = RandomQkv(1, 2, 2, 6, 8);
  const PrefillResult pre = Prefill(x.q, x.k, x.v, Elu(), opt);
  const Qkv none = Slice(x, 6, 0);
  const PrefillResult same = Prefill(none.q, none.k, none.v, Elu(), opt, &pre.state);
  EXPECT_EQ(same.y.size(2), 0);
  EXPECT_TRUE(at::equal(same.state.kv, pre.state.kv));
  const State wrong = EmptyState(1, 2, 7, 8, x.q.options());
  const std::string msg = ErrorOf([&] { Prefill(x.q, x.k, x.v, Elu(), opt, &wrong); });
  EXPECT_NE(msg.find("linear_attention::Prefill: state.kv must be [1, 2, 8, 8]"),
            std::string::npos)
      << msg;
}

TEST(LinearAttention, GradientsMatchFiniteDifferencesAndReference) {
  at::manual_seed(13);
  const Options opt{/*chunk=*/3, /*eps=*/1e-6};
  const auto run = [&](bool parallel) {
    return [=](const std::vector<at::Tensor>& in) {
      FeatureMaps maps;
      maps.q_weight = in[3];
      maps.k_weight = in[4];
      return parallel ? ForwardParallel(in[0], in[1], in[2], maps, opt)
                      : ForwardReference(in[0], in[1], in[2], maps, opt);
    };
  };
  const FeatureMaps m = testing::RandomHedgehog(2, 1, 3, 2);
  const Qkv small = RandomQkv(2, 2, 1, 7, 3);
  EXPECT_LT(GradCheck(run(true), {small.q, small.k, small.v, m.q_weight, m.k_weight}), 1e-6);

  const FeatureMaps m2 = testing::RandomHedgehog(4, 2, 6, 4);
  const Qkv x = RandomQkv(2, 4, 2, 23, 6);
  const std::vector<at::Tensor> in{x.q, x.k, x.v, m2.q_weight, m2.k_weight};
  const at::Tensor r = at::randn(x.q.sizes(), at::kDouble);
  const auto gp = Grads(run(true), in, r);
  const auto gr = Grads(run(false), in, r);
  for (size_t i = 0; i < in.size(); ++i) EXPECT_LT(RelErr(gp[i], gr[i]), 1e-9) << "input " << i;
}

TEST(LinearAttention, Float32KeepsDtypeAndTracksFloat64) {
  at::manual_seed(14);
  const Qkv x = RandomQkv(1, 2, 2, 70, 8);
  const at::Tensor y32 =
      ForwardParallel(x.q.to(at::kFloat), x.k.to(at::kFloat), x.v.to(at::kFloat), Elu());
  EXPECT_EQ(y32.scalar_type(), at::kFloat);
  EXPECT_LT(RelErr(y32, ForwardReference(x.q, x.k, x.v, Elu())), 1e-5);
}

TEST(LinearAttention, RejectsBadArgumentsWithShapesInMessage) {
  const Qkv x = RandomQkv(1, 3, 2, 4, 8);
  std::string msg = ErrorOf([&] { ForwardParallel(x.q, x.k, x.v, Elu()); });
  EXPECT_NE(msg.find("query heads must be a multiple of kv heads"), std::string::npos) << msg;
  const Qkv y = RandomQkv(1, 2, 2, 4, 8);
  msg = ErrorOf([&] { ForwardParallel(y.q, y.k, y.v.narrow(2, 0, 3), Elu()); });
  EXPECT_NE(msg.find("v must have k's shape [1, 2, 4, 8]"), std::string::npos) << msg;
  msg = ErrorOf([&] { ForwardParallel(y.q, y.k, y.v, Elu(), Options{0, 1e-6}); });
  EXPECT_NE(msg.find("chunk must be >= 1"), std::string::npos) << msg;
  State st = EmptyState(1, 2, 8, 8, y.q.options());
  msg = ErrorOf([&] { DecodeStep(st, y.q, y.k, y.v, Elu()); });
  EXPECT_NE(msg.find("decodes one token"), std::string::npos) << msg;
  State wrong = EmptyState(1, 2, 7, 8, y.q.options());
  msg = ErrorOf([&] {
    DecodeStep(wrong, y.q.narrow(2, 0, 1), y.k.narrow(2, 0, 1), y.v.narrow(2, 0, 1), Elu());
  });
  EXPECT_NE(msg.find("state.kv must be [1, 2, 8, 8]"), std::string::npos) << msg;
}

}  // namespace
}  // namespace linearize::kernels::linear_attention
