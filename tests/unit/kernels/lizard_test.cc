// Lizard hybrid: chunked == recurrent == the [T, T] reference in float64,
// strong decays, per-row decode positions, gradients, errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "kernels/lizard/lizard_attention.h"
#include "tests/unit/kernels/attention_test_util.h"

namespace linearize::kernels::lizard {
namespace {

using testing::CloneState;
using testing::ErrorOf;
using testing::ExpectCloseState;
using testing::GradCheck;
using testing::Grads;
using testing::Randn;
using testing::RelErr;

struct Case {
  Inputs in;
  Weights w;
};

struct Shape {
  int64_t b = 2, hq = 4, hkv = 2, t = 10, d = 6, f = 3, meta = 4;
  bool gate_per_kv_head = false;
  bool separate_window_qk = false;
};

// Gates sigmoid(x + 2) (mostly close to 1, some decay); log_gamma = log sigmoid.
Case RandomCase(const Shape& s, double gate_shift = 2.0) {
  Case c;
  c.in.q = Randn({s.b, s.hq, s.t, s.d});
  c.in.k = Randn({s.b, s.hkv, s.t, s.d});
  c.in.v = Randn({s.b, s.hkv, s.t, s.d});
  c.in.log_gamma =
      at::log_sigmoid(Randn({s.b, s.gate_per_kv_head ? s.hkv : s.hq, s.t}) + gate_shift);
  if (s.separate_window_qk) {
    c.in.q_window = Randn({s.b, s.hq, s.t, s.d});
    c.in.k_window = Randn({s.b, s.hkv, s.t, s.d});
  }
  c.w.maps = testing::RandomHedgehog(s.hq, s.hq, s.d, s.f);
  c.w.meta_logits = Randn({s.hq, s.meta});
  c.w.alpha = Randn({s.hq});
  return c;
}

Options Opt(int64_t window, int64_t chunk) {
  Options o;
  o.window = window;
  o.chunk = chunk;
  return o;
}

Inputs Slice(const Inputs& in, int64_t from, int64_t len) {
  Inputs out;
  out.q = in.q.narrow(2, from, len);
  out.k = in.k.narrow(2, from, len);
  out.v = in.v.narrow(2, from, len);
  out.log_gamma = in.log_gamma.narrow(2, from, len);
  if (in.q_window.defined()) {
    out.q_window = in.q_window.narrow(2, from, len);
    out.k_window = in.k_window.narrow(2, from, len);
  }
  return out;
}

at::Tensor DecodeAll(State& state, const Case& c, const Options& o, int64_t from = 0) {
  std::vector<at::Tensor> ys;
  for (int64_t i = from; i < c.in.q.size(2); ++i) {
    ys.push_back(DecodeStep(state, Slice(c.in, i, 1), c.w, o));
  }
  return at::cat(ys, 2);
}

TEST(Lizard, ParallelMatchesReferenceForEveryLength) {
  at::manual_seed(30);
  for (auto [window, chunk] : {std::pair<int64_t, int64_t>{12, 8}, {6, 16}, {16, 16}}) {
    for (int64_t t : {int64_t{1}, window - 1, window, int64_t{37}, 3 * window + 5}) {
      Shape s;
      s.t = t;
      s.gate_per_kv_head = t % 2 == 1;
      s.separate_window_qk = t > 20;
      const Case c = RandomCase(s);
      const Options o = Opt(window, chunk);
      EXPECT_LT(RelErr(ForwardParallel(c.in, c.w, o), ForwardReference(c.in, c.w, o)), 1e-9)
          << "W=" << window << " C=" << chunk << " T=" << t;
    }
  }
}

TEST(Lizard, DefaultWindowOverLongSequenceAndNoSinks) {
  at::manual_seed(31);
  Shape s;
  s.b = 1;
  s.hq = 2;
  s.hkv = 1;
  s.t = 300;
  s.d = 8;
  s.f = 4;
  const Case c = RandomCase(s);
  EXPECT_LT(RelErr(ForwardParallel(c.in, c.w), ForwardReference(c.in, c.w)), 1e-9);
  s.meta = 0;
  s.t = 40;
  const Case n = RandomCase(s);
  EXPECT_LT(RelErr(ForwardParallel(n.in, n.w, Opt(8, 16)), ForwardReference(n.in, n.w, Opt(8, 16))),
            1e-9);
}

TEST(Lizard, BranchesAreTheDocumentedFormulas) {
  // alpha = 0 leaves the gated branch; with gates of 1 it is plain causal
  // linear attention. Sinks at -inf leave a plain window softmax.
  at::manual_seed(32);
  Shape s;
  s.b = 1;
  s.hq = s.hkv = 1;
  s.t = 7;
  s.d = 4;
  Case c = RandomCase(s);
  c.in.log_gamma = at::zeros_like(c.in.log_gamma);
  c.w.alpha = at::zeros_like(c.w.alpha);
  const Options o = Opt(3, 4);
  const at::Tensor phi_q = HedgehogFeatureMap(c.in.q, c.w.maps.q_weight);
  const at::Tensor phi_k = HedgehogFeatureMap(c.in.k, c.w.maps.k_weight);
  const at::Tensor causal = at::ones({7, 7}, at::kBool).tril();
  const at::Tensor a =
      at::matmul(phi_q, phi_k.transpose(-1, -2)).masked_fill(causal.logical_not(), 0);
  const at::Tensor lin = at::matmul(a, c.in.v) / (a.sum(-1, true) + o.eps);
  EXPECT_LT(RelErr(ForwardParallel(c.in, c.w, o), lin), 1e-12);

  c.w.alpha = at::ones_like(c.w.alpha);
  c.w.meta_logits = at::full_like(c.w.meta_logits, -1e4);
  const at::Tensor s_ij = at::matmul(c.in.q, c.in.k.transpose(-1, -2)) / 2.0;
  const at::Tensor band = at::logical_and(causal, at::ones({7, 7}, at::kBool).triu(-2));
  const at::Tensor win =
      at::matmul(at::softmax(s_ij.masked_fill(band.logical_not(), -1e300), -1), c.in.v);
  EXPECT_LT(RelErr(ForwardParallel(c.in, c.w, o), lin + win), 1e-12);
}

TEST(Lizard, StrongDecaysStayFiniteAndCorrect) {
  at::manual_seed(33);
  for (double shift : {-20.0, -1000.0}) {
    Shape s;
    s.t = 100;
    Case c = RandomCase(s);
    c.in.log_gamma = at::clamp_max(shift + at::randn(c.in.log_gamma.sizes(), at::kDouble), 0);
    const Options o = Opt(16, 64);
    const at::Tensor par = ForwardParallel(c.in, c.w, o);
    ASSERT_TRUE(at::isfinite(par).all().item<bool>()) << shift;
    EXPECT_LT(RelErr(par, ForwardReference(c.in, c.w, o)), 1e-9) << shift;
    // Every gate ~ 0: the gated branch only sees its own token, y_gla = v_i.
    Case g = c;
    g.w.alpha = at::zeros_like(g.w.alpha);
    const at::Tensor v = at::repeat_interleave(c.in.v, 2, 1);
    EXPECT_LT(RelErr(ForwardParallel(g.in, g.w, o), v), 1e-5) << shift;
    // Gradients stay finite too.
    at::Tensor lg = c.in.log_gamma.clone().requires_grad_(true);
    at::Tensor q = c.in.q.clone().requires_grad_(true);
    Inputs in = c.in;
    in.log_gamma = lg;
    in.q = q;
    ForwardParallel(in, c.w, o).sum().backward();
    EXPECT_TRUE(at::isfinite(lg.grad()).all().item<bool>()) << shift;
    EXPECT_TRUE(at::isfinite(q.grad()).all().item<bool>()) << shift;
    // And the recurrent form agrees.
    Shape small = s;
    small.t = 30;
    Case d = RandomCase(small);
    d.in.log_gamma = at::clamp_max(shift + at::randn(d.in.log_gamma.sizes(), at::kDouble), 0);
    State st = EmptyState(2, 4, 2, 6, 6, o, d.in.q.options());
    EXPECT_LT(RelErr(DecodeAll(st, d, o), ForwardReference(d.in, d.w, o)), 1e-9) << shift;
  }
}

TEST(Lizard, ZeroGateResetsTheStateWithoutNaN) {
  // log_gamma = -inf (gamma = 0) at position 9: the gated branch forgets
  // everything before it, in every form, and gradients stay finite.
  at::manual_seed(38);
  Shape s;
  s.t = 21;
  Case c = RandomCase(s);
  c.in.log_gamma.narrow(2, 9, 1).fill_(-std::numeric_limits<double>::infinity());
  const Options o = Opt(4, 8);
  const at::Tensor ref = ForwardReference(c.in, c.w, o);
  ASSERT_TRUE(at::isfinite(ref).all().item<bool>());
  EXPECT_LT(RelErr(ForwardParallel(c.in, c.w, o), ref), 1e-9);
  State st = EmptyState(2, 4, 2, 6, 6, o, c.in.q.options());
  EXPECT_LT(RelErr(DecodeAll(st, c, o), ref), 1e-9);
  // Without the window branch, positions >= 9 only see tokens 9.. .
  Case g = c;
  g.w.alpha = at::zeros_like(g.w.alpha);
  const at::Tensor tail = ForwardParallel(Slice(g.in, 9, 12), g.w, o);
  EXPECT_LT(RelErr(ForwardParallel(g.in, g.w, o).narrow(2, 9, 12), tail), 1e-12);
  at::Tensor lg = c.in.log_gamma.clone().requires_grad_(true);
  Inputs in = c.in;
  in.log_gamma = lg;
  ForwardParallel(in, c.w, o).sum().backward();
  EXPECT_TRUE(at::isfinite(lg.grad()).all().item<bool>());
}

TEST(Lizard, DecodeMatchesReferenceAndPrefillState) {
  at::manual_seed(34);
  const Options o = Opt(5, 4);
  for (int64_t t : {1, 4, 5, 13, 23}) {
    Shape s;
    s.t = t;
    s.separate_window_qk = t >= 5;
    s.gate_per_kv_head = t == 13;
    const Case c = RandomCase(s);
    State st = EmptyState(2, 4, 2, 6, 6, o, c.in.q.options());
    const at::Tensor rec = DecodeAll(st, c, o);
    EXPECT_LT(RelErr(rec, ForwardReference(c.in, c.w, o)), 1e-9) << "T=" << t;
    const PrefillResult pre = Prefill(c.in, c.w, o);
    EXPECT_LT(RelErr(pre.y, rec), 1e-9) << "T=" << t;
    EXPECT_LT(RelErr(pre.state.kv, st.kv), 1e-12) << "T=" << t;
    EXPECT_LT(RelErr(pre.state.k_sum, st.k_sum), 1e-12) << "T=" << t;
    EXPECT_TRUE(at::equal(pre.state.k_window, st.k_window)) << "T=" << t;
    EXPECT_TRUE(at::equal(pre.state.v_window, st.v_window)) << "T=" << t;
    EXPECT_TRUE(at::equal(pre.state.position, st.position)) << "T=" << t;
  }
}

TEST(Lizard, PrefillThenDecodeAndRowsAtDifferentPositions) {
  at::manual_seed(35);
  const Options o = Opt(4, 3);
  Shape s;
  s.b = 1;
  s.hq = 2;
  s.hkv = 1;
  s.t = 30;
  s.d = 4;
  s.separate_window_qk = true;
  const Case a = RandomCase(s);
  Case b = RandomCase(s);
  b.w = a.w;
  PrefillResult pa = Prefill(Slice(a.in, 0, 7), a.w, o);
  PrefillResult pb = Prefill(Slice(b.in, 0, 18), b.w, o);
  State st{at::cat({pa.state.kv, pb.state.kv}), at::cat({pa.state.k_sum, pb.state.k_sum}),
           at::cat({pa.state.k_window, pb.state.k_window}),
           at::cat({pa.state.v_window, pb.state.v_window}),
           at::cat({pa.state.position, pb.state.position})};
  std::vector<at::Tensor> ya{pa.y}, yb{pb.y};
  for (int64_t i = 0; i < 12; ++i) {
    const Inputs ta = Slice(a.in, 7 + i, 1), tb = Slice(b.in, 18 + i, 1);
    Inputs both;
    both.q = at::cat({ta.q, tb.q});
    both.k = at::cat({ta.k, tb.k});
    both.v = at::cat({ta.v, tb.v});
    both.log_gamma = at::cat({ta.log_gamma, tb.log_gamma});
    both.q_window = at::cat({ta.q_window, tb.q_window});
    both.k_window = at::cat({ta.k_window, tb.k_window});
    const at::Tensor y = DecodeStep(st, both, a.w, o);
    ya.push_back(y.narrow(0, 0, 1));
    yb.push_back(y.narrow(0, 1, 1));
  }
  EXPECT_LT(RelErr(at::cat(ya, 2), ForwardReference(Slice(a.in, 0, 19), a.w, o)), 1e-9);
  EXPECT_LT(RelErr(at::cat(yb, 2), ForwardReference(b.in, b.w, o)), 1e-9);
}

TEST(Lizard, PrefillFromAStateEqualsOnePrefillAndDecodeSteps) {
  at::manual_seed(38);
  struct Config {
    int64_t window, chunk;
    std::vector<int64_t> firsts, seconds;
  };
  // First parts: 1, below the window, not a multiple of W or C, W, W + 1,
  // several windows. Second parts: 1, 2, above the chunk and not a multiple
  // of it, a multiple of it.
  const std::vector<Config> configs = {{32, 8, {1, 13, 32, 33, 70}, {1, 2, 21, 32}},
                                       {5, 4, {1, 3, 5, 6, 13}, {2, 9, 23}}};
  for (const Config& cfg : configs) {
    const Options o = Opt(cfg.window, cfg.chunk);
    for (int64_t a : cfg.firsts) {
      for (int64_t b : cfg.seconds) {
        const std::string what =
            "W=" + std::to_string(cfg.window) + " A=" + std::to_string(a) + " B=" +
            std::to_string(b);
        // Batch 2, GQA (4 query heads on 2 kv heads), 4 meta-memory sinks.
        Shape s;
        s.t = a + b;
        s.separate_window_qk = b % 2 == 1;
        s.gate_per_kv_head = a % 2 == 1;
        const Case c = RandomCase(s);
        const PrefillResult whole = Prefill(c.in, c.w, o);
        const PrefillResult pa = Prefill(Slice(c.in, 0, a), c.w, o);
        const State before = CloneState(pa.state);
        const PrefillResult pb = Prefill(Slice(c.in, a, b), c.w, o, &pa.state);
        EXPECT_LT(RelErr(pb.y, whole.y.narrow(2, a, b)), 1e-9) << what;
        ExpectCloseState(pb.state, whole.state, what);
        ExpectCloseState(pa.state, before, what + " (initial state untouched)");
        // b DecodeSteps from the first part's state.
        State st = CloneState(pa.state);
        EXPECT_LT(RelErr(pb.y, DecodeAll(st, c, o, a)), 1e-9) << what;
        ExpectCloseState(pb.state, st, what);
      }
    }
  }
}

TEST(Lizard, PromptInThreePrefillsEqualsOneWithStrongDecays) {
  at::manual_seed(39);
  const Options o = Opt(6, 4);
  Shape s;
  s.b = 1;
  s.t = 60;
  s.meta = 2;
  // gate_shift -3: gates ~ 0.05, the initial state decays towards 0 within the prompt.
  for (double shift : {2.0, -3.0}) {
    const Case c = RandomCase(s, shift);
    const at::Tensor ref = ForwardReference(c.in, c.w, o);
    PrefillResult r = Prefill(Slice(c.in, 0, 17), c.w, o);
    std::vector<at::Tensor> ys = {r.y};
    for (auto [from, len] : {std::pair<int64_t, int64_t>{17, 25}, {42, 11}}) {
      r = Prefill(Slice(c.in, from, len), c.w, o, &r.state);
      ys.push_back(r.y);
    }
    ys.push_back(DecodeAll(r.state, c, o, 53));
    EXPECT_LT(RelErr(at::cat(ys, 2), ref), 1e-9) << "gate shift " << shift;
    EXPECT_EQ(r.state.position.item<int64_t>(), 60);
  }
}

TEST(Lizard, PrefillFromAStateAtPositionZeroOrEmptyPromptOrMixedRows) {
  at::manual_seed(40);
  const Options o = Opt(4, 4);
  Shape s;
  s.t = 9;
  const Case c = RandomCase(s);
  const State empty = EmptyState(2, 4, 2, FeatureDim(c.w.maps, s.d), s.d, o, c.in.q.options());
  const PrefillResult from_empty = Prefill(c.in, c.w, o, &empty);
  const PrefillResult plain = Prefill(c.in, c.w, o);
  EXPECT_TRUE(at::equal(from_empty.y, plain.y));
  ExpectCloseState(from_empty.state, plain.state, "position 0");
  const PrefillResult same = Prefill(Slice(c.in, 9, 0), c.w, o, &plain.state);
  EXPECT_EQ(same.y.size(2), 0);
  ExpectCloseState(same.state, plain.state, "empty prompt");
  State mixed = CloneState(plain.state);
  mixed.position[0] = 3;
  const std::string msg = ErrorOf([&] { Prefill(c.in, c.w, o, &mixed); });
  EXPECT_NE(msg.find("lizard::Prefill: the initial state's rows sit at different positions"),
            std::string::npos)
      << msg;
}

TEST(Lizard, GradientsMatchFiniteDifferencesAndReference) {
  at::manual_seed(36);
  // own_window_qk = false: the window branch on q and k (x[4], x[5] unused).
  const auto run = [](bool parallel, const Options& o, bool own_window_qk = true) {
    return [=](const std::vector<at::Tensor>& x) {
      Inputs in;
      in.q = x[0];
      in.k = x[1];
      in.v = x[2];
      in.log_gamma = x[3];
      if (own_window_qk) {
        in.q_window = x[4];
        in.k_window = x[5];
      }
      Weights w;
      w.maps.q_weight = x[6];
      w.maps.k_weight = x[7];
      w.meta_logits = x[8];
      w.alpha = x[9];
      return parallel ? ForwardParallel(in, w, o) : ForwardReference(in, w, o);
    };
  };
  const auto inputs = [](const Case& c) {
    return std::vector<at::Tensor>{c.in.q,
                                   c.in.k,
                                   c.in.v,
                                   c.in.log_gamma,
                                   c.in.q_window,
                                   c.in.k_window,
                                   c.w.maps.q_weight,
                                   c.w.maps.k_weight,
                                   c.w.meta_logits,
                                   c.w.alpha};
  };
  Shape tiny;
  tiny.b = 1;
  tiny.hq = 2;
  tiny.hkv = 1;
  tiny.t = 7;
  tiny.d = 3;
  tiny.f = 2;
  tiny.meta = 2;
  tiny.separate_window_qk = true;
  EXPECT_LT(GradCheck(run(true, Opt(3, 3)), inputs(RandomCase(tiny, 0.0))), 1e-6);

  Shape s;
  s.t = 27;
  s.separate_window_qk = true;
  const Case c = RandomCase(s, 0.0);
  const std::vector<at::Tensor> in = inputs(c);
  const at::Tensor r = at::randn(c.in.q.sizes(), at::kDouble);
  const auto gp = Grads(run(true, Opt(5, 4)), in, r);
  const auto gr = Grads(run(false, Opt(5, 4)), in, r);
  for (size_t i = 0; i < in.size(); ++i) EXPECT_LT(RelErr(gp[i], gr[i]), 1e-9) << "input " << i;

  // The window branch on q and k, gates per kv head (GQA): q and k's
  // gradients then gather both branches'.
  tiny.gate_per_kv_head = true;
  EXPECT_LT(GradCheck(run(true, Opt(3, 3), false), inputs(RandomCase(tiny, 0.0))), 1e-6);
  s.gate_per_kv_head = true;
  const Case shared = RandomCase(s, 0.0);
  const std::vector<at::Tensor> sin = inputs(shared);
  const auto sp = Grads(run(true, Opt(5, 4), false), sin, r);
  const auto sr = Grads(run(false, Opt(5, 4), false), sin, r);
  for (size_t i = 0; i < sin.size(); ++i) {
    EXPECT_LT(RelErr(sp[i], sr[i]), 1e-9) << "input " << i << ", window on q and k";
  }
  EXPECT_EQ(sp[4].abs().max().item<double>(), 0) << "q_window unused";
  // Equal to passing q and k again as the window's own q / k: their
  // gradients are the two uses' sum.
  std::vector<at::Tensor> again = sin;
  again[4] = sin[0];
  again[5] = sin[1];
  const auto ga = Grads(run(true, Opt(5, 4)), again, r);
  EXPECT_LT(RelErr(sp[0], ga[0] + ga[4]), 1e-12) << "q";
  EXPECT_LT(RelErr(sp[1], ga[1] + ga[5]), 1e-12) << "k";
}

TEST(Lizard, Bfloat16KeepsDtypeAndTracksFloat64AndEmptyInput) {
  at::manual_seed(37);
  Shape s;
  s.t = 40;
  const Case c = RandomCase(s);
  Inputs in16 = c.in;
  for (at::Tensor* t : {&in16.q, &in16.k, &in16.v, &in16.log_gamma}) *t = t->to(at::kBFloat16);
  const at::Tensor y = ForwardParallel(in16, c.w, Opt(8, 16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  // Compare with float64 on the same bf16-rounded inputs: only float32 compute
  // and the bf16 output rounding differ.
  Inputs in64 = in16;
  for (at::Tensor* t : {&in64.q, &in64.k, &in64.v, &in64.log_gamma}) *t = t->to(at::kDouble);
  EXPECT_LT(RelErr(y, ForwardReference(in64, c.w, Opt(8, 16))), 1e-2);

  s.t = 0;
  const Case e = RandomCase(s);
  EXPECT_EQ(ForwardParallel(e.in, e.w).sizes(), e.in.q.sizes());
  const PrefillResult pre = Prefill(e.in, e.w);
  EXPECT_EQ(pre.state.kv.sizes(), at::IntArrayRef({2, 4, 6, 6}));
  EXPECT_EQ(pre.state.position.sum().item<int64_t>(), 0);
}

TEST(Lizard, RejectsBadArgumentsWithShapesInMessage) {
  Shape s;
  Case c = RandomCase(s);
  Case bad = c;
  bad.in.log_gamma = at::zeros({2, 3, s.t}, at::kDouble);
  std::string msg = ErrorOf([&] { ForwardParallel(bad.in, bad.w); });
  EXPECT_NE(msg.find("log_gamma must be [2, 4 or 2, 10]"), std::string::npos) << msg;
  bad = c;
  bad.in.log_gamma = c.in.log_gamma + 5;
  msg = ErrorOf([&] { ForwardParallel(bad.in, bad.w); });
  EXPECT_NE(msg.find("log_gamma must be <= 0"), std::string::npos) << msg;
  bad = c;
  bad.in.q_window = c.in.q;
  msg = ErrorOf([&] { ForwardParallel(bad.in, bad.w); });
  EXPECT_NE(msg.find("both q_window and k_window"), std::string::npos) << msg;
  bad = c;
  bad.w.meta_logits = at::zeros({3, 4}, at::kDouble);
  msg = ErrorOf([&] { ForwardParallel(bad.in, bad.w); });
  EXPECT_NE(msg.find("meta_logits must be [4, M]"), std::string::npos) << msg;
  State st = EmptyState(2, 4, 2, 6, 6, Opt(8, 4), c.in.q.options());
  msg = ErrorOf([&] { DecodeStep(st, Slice(c.in, 0, 1), c.w, Opt(5, 4)); });
  EXPECT_NE(msg.find("must be [2, 2, 5, 6]"), std::string::npos) << msg;
}

}  // namespace
}  // namespace linearize::kernels::lizard
