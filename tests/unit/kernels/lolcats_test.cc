// LoLCATs hybrid: chunked == recurrent == the [T, T] reference in float64 for
// sliding and terrace windows, per-row decode positions, gradients, errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/lolcats/lolcats_attention.h"
#include "tests/unit/kernels/attention_test_util.h"

namespace linearize::kernels::lolcats {
namespace {

using testing::CloneState;
using testing::ErrorOf;
using testing::ExpectCloseState;
using testing::GradCheck;
using testing::Grads;
using testing::Randn;
using testing::RelErr;

struct Case {
  at::Tensor q, k, v;
  Weights w;
};

Case RandomCase(int64_t b, int64_t hq, int64_t hkv, int64_t t, int64_t d, int64_t f,
                bool k_map_per_kv_head = false) {
  Case c{Randn({b, hq, t, d}), Randn({b, hkv, t, d}), Randn({b, hkv, t, d}), {}};
  c.w.maps = testing::RandomHedgehog(hq, k_map_per_kv_head ? hkv : hq, d, f);
  c.w.window_logit = Randn({hq});
  return c;
}

Options Opt(int64_t window, int64_t chunk, WindowKind kind) {
  Options o;
  o.window = window;
  o.chunk = chunk;
  o.window_kind = kind;
  return o;
}

const char* Name(WindowKind kind) { return kind == WindowKind::kTerrace ? "terrace" : "sliding"; }

// Runs DecodeStep over every token of the case from `state`, from position `from`.
at::Tensor DecodeAll(State& state, const Case& c, const Options& o, int64_t from = 0) {
  std::vector<at::Tensor> ys;
  for (int64_t i = from; i < c.q.size(2); ++i) {
    ys.push_back(
        DecodeStep(state, c.q.narrow(2, i, 1), c.k.narrow(2, i, 1), c.v.narrow(2, i, 1), c.w, o));
  }
  return at::cat(ys, 2);
}

void ExpectSameState(const State& a, const State& b, const std::string& what) {
  EXPECT_LT(RelErr(a.kv, b.kv), 1e-12) << what;
  EXPECT_LT(RelErr(a.k_sum, b.k_sum), 1e-12) << what;
  EXPECT_TRUE(at::equal(a.k_window, b.k_window)) << what;
  EXPECT_TRUE(at::equal(a.v_window, b.v_window)) << what;
  EXPECT_TRUE(at::equal(a.position, b.position)) << what;
}

TEST(Lolcats, ParallelMatchesReferenceForEveryLength) {
  at::manual_seed(20);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    // (window, chunk): chunk < window, chunk > window, and equal.
    for (auto [window, chunk] : {std::pair<int64_t, int64_t>{12, 8}, {6, 16}, {16, 16}}) {
      const Options o = Opt(window, chunk, kind);
      // T = 1, T < W, T == W, T not a multiple of C, several chunks beyond W.
      for (int64_t t : {int64_t{1}, window - 1, window, int64_t{37}, 3 * window + 5}) {
        const Case c = RandomCase(2, 4, 2, t, 8, 5);
        const at::Tensor ref = ForwardReference(c.q, c.k, c.v, c.w, o);
        EXPECT_LT(RelErr(ForwardParallel(c.q, c.k, c.v, c.w, o), ref), 1e-9)
            << Name(kind) << " W=" << window << " C=" << chunk << " T=" << t;
      }
    }
  }
}

TEST(Lolcats, DefaultWindowOfSixtyFourOverLongSequence) {
  at::manual_seed(21);
  const Case c = RandomCase(1, 2, 1, 200, 16, 8, /*k_map_per_kv_head=*/true);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    Options o;
    o.window_kind = kind;
    const at::Tensor ref = ForwardReference(c.q, c.k, c.v, c.w, o);
    EXPECT_LT(RelErr(ForwardParallel(c.q, c.k, c.v, c.w, o), ref), 1e-9) << Name(kind);
  }
}

TEST(Lolcats, WindowAndLinearPartsAreTheDocumentedSets) {
  // With T <= W every key is in the window, so the output is softmax
  // attention (g cancels); beyond it, the result differs from softmax.
  at::manual_seed(22);
  const Case c = RandomCase(1, 2, 2, 9, 4, 3);
  const Options o = Opt(9, 4, WindowKind::kSliding);
  const at::Tensor s = at::matmul(c.q, c.k.transpose(-1, -2)) / 2.0;
  const at::Tensor causal = at::ones({9, 9}, at::kBool).tril();
  const at::Tensor p = at::softmax(s.masked_fill(causal.logical_not(), -1e300), -1);
  EXPECT_LT(RelErr(ForwardParallel(c.q, c.k, c.v, c.w, o), at::matmul(p, c.v)), 1e-12);
  EXPECT_GT(RelErr(ForwardParallel(c.q, c.k, c.v, c.w, Opt(3, 4, WindowKind::kSliding)),
                   at::matmul(p, c.v)),
            1e-3);
}

TEST(Lolcats, DecodeMatchesReferenceAndPrefillState) {
  at::manual_seed(23);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    const Options o = Opt(5, 4, kind);
    for (int64_t t : {1, 4, 5, 13, 23}) {
      const Case c = RandomCase(2, 4, 2, t, 6, 3, /*k_map_per_kv_head=*/t % 2 == 1);
      State st = EmptyState(2, 4, 2, 6, 6, o, c.q.options());
      const at::Tensor rec = DecodeAll(st, c, o);
      const std::string what = std::string(Name(kind)) + " T=" + std::to_string(t);
      EXPECT_LT(RelErr(rec, ForwardReference(c.q, c.k, c.v, c.w, o)), 1e-9) << what;
      const PrefillResult pre = Prefill(c.q, c.k, c.v, c.w, o);
      EXPECT_LT(RelErr(pre.y, rec), 1e-9) << what;
      ExpectSameState(pre.state, st, what);
      EXPECT_EQ(st.k_window.size(2), kind == WindowKind::kTerrace ? 10 : 5);
    }
  }
}

TEST(Lolcats, PrefillThenDecodeContinuesTheSequence) {
  at::manual_seed(24);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    const Options o = Opt(4, 3, kind);
    const Case c = RandomCase(2, 2, 1, 31, 4, 3);
    for (int64_t split : {1, 3, 4, 9, 12}) {
      PrefillResult pre = Prefill(c.q.narrow(2, 0, split), c.k.narrow(2, 0, split),
                                  c.v.narrow(2, 0, split), c.w, o);
      const at::Tensor y = at::cat({pre.y, DecodeAll(pre.state, c, o, split)}, 2);
      EXPECT_LT(RelErr(y, ForwardReference(c.q, c.k, c.v, c.w, o)), 1e-9)
          << Name(kind) << " split=" << split;
    }
  }
}

TEST(Lolcats, RowsAtDifferentPositionsDecodeIndependently) {
  at::manual_seed(25);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    const Options o = Opt(4, 8, kind);
    const Case a = RandomCase(1, 2, 1, 30, 4, 3);
    Case b = RandomCase(1, 2, 1, 30, 4, 3);
    b.w = a.w;
    // Row 0 has read 7 tokens, row 1 has read 18; both then decode 12 more.
    PrefillResult pa =
        Prefill(a.q.narrow(2, 0, 7), a.k.narrow(2, 0, 7), a.v.narrow(2, 0, 7), a.w, o);
    PrefillResult pb =
        Prefill(b.q.narrow(2, 0, 18), b.k.narrow(2, 0, 18), b.v.narrow(2, 0, 18), b.w, o);
    State st{at::cat({pa.state.kv, pb.state.kv}), at::cat({pa.state.k_sum, pb.state.k_sum}),
             at::cat({pa.state.k_window, pb.state.k_window}),
             at::cat({pa.state.v_window, pb.state.v_window}),
             at::cat({pa.state.position, pb.state.position})};
    std::vector<at::Tensor> ya, yb;
    for (int64_t s = 0; s < 12; ++s) {
      const auto tok = [&](const at::Tensor& x, const at::Tensor& y) {
        return at::cat({x.narrow(2, 7 + s, 1), y.narrow(2, 18 + s, 1)});
      };
      const at::Tensor y = DecodeStep(st, tok(a.q, b.q), tok(a.k, b.k), tok(a.v, b.v), a.w, o);
      ya.push_back(y.narrow(0, 0, 1));
      yb.push_back(y.narrow(0, 1, 1));
    }
    const at::Tensor ref_a = ForwardReference(a.q, a.k, a.v, a.w, o).narrow(2, 7, 12);
    const at::Tensor ref_b = ForwardReference(b.q, b.k, b.v, b.w, o).narrow(2, 18, 12);
    EXPECT_LT(RelErr(at::cat(ya, 2), ref_a), 1e-9) << Name(kind);
    EXPECT_LT(RelErr(at::cat(yb, 2), ref_b), 1e-9) << Name(kind);
    EXPECT_EQ(st.position[0].item<int64_t>(), 19);
    EXPECT_EQ(st.position[1].item<int64_t>(), 30);
  }
}

Case Slice(const Case& c, int64_t from, int64_t len) {
  return Case{c.q.narrow(2, from, len), c.k.narrow(2, from, len), c.v.narrow(2, from, len), c.w};
}

TEST(Lolcats, PrefillFromAStateEqualsOnePrefillAndDecodeSteps) {
  at::manual_seed(28);
  struct Config {
    int64_t window, chunk;
    std::vector<int64_t> firsts, seconds;
  };
  // First parts: 1, below the window, not a multiple of W or C, exactly W,
  // W + 1, beyond the terrace ring (2W + 2). Second parts: 1, 2, above the
  // chunk and not a multiple of it, a multiple of it.
  const std::vector<Config> configs = {{64, 16, {1, 37, 64, 65, 130}, {1, 2, 45, 64}},
                                       {5, 4, {1, 3, 5, 6, 13}, {2, 9, 23}}};
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    for (const Config& cfg : configs) {
      const Options o = Opt(cfg.window, cfg.chunk, kind);
      for (int64_t a : cfg.firsts) {
        for (int64_t b : cfg.seconds) {
          const std::string what = std::string(Name(kind)) + " W=" + std::to_string(cfg.window) +
                                   " A=" + std::to_string(a) + " B=" + std::to_string(b);
          // Batch 2, GQA (4 query heads on 2 kv heads).
          const Case c = RandomCase(2, 4, 2, a + b, 8, 4, /*k_map_per_kv_head=*/b % 2 == 1);
          const PrefillResult whole = Prefill(c.q, c.k, c.v, c.w, o);
          const Case first = Slice(c, 0, a), second = Slice(c, a, b);
          const PrefillResult pa = Prefill(first.q, first.k, first.v, c.w, o);
          const State before = CloneState(pa.state);
          const PrefillResult pb = Prefill(second.q, second.k, second.v, c.w, o, &pa.state);
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
}

TEST(Lolcats, PromptInThreePrefillsEqualsOneAndDecodeContinues) {
  at::manual_seed(29);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    const Options o = Opt(8, 4, kind);
    const Case c = RandomCase(1, 2, 1, 70, 4, 3);
    const at::Tensor ref = ForwardReference(c.q, c.k, c.v, c.w, o);
    PrefillResult r = Prefill(c.q.narrow(2, 0, 19), c.k.narrow(2, 0, 19), c.v.narrow(2, 0, 19),
                              c.w, o);
    std::vector<at::Tensor> ys = {r.y};
    for (auto [from, len] : {std::pair<int64_t, int64_t>{19, 21}, {40, 20}}) {
      const Case part = Slice(c, from, len);
      r = Prefill(part.q, part.k, part.v, c.w, o, &r.state);
      ys.push_back(r.y);
    }
    ys.push_back(DecodeAll(r.state, c, o, 60));
    EXPECT_LT(RelErr(at::cat(ys, 2), ref), 1e-9) << Name(kind);
    EXPECT_EQ(r.state.position.item<int64_t>(), 70);
  }
}

TEST(Lolcats, PrefillFromAStateAtPositionZeroOrEmptyPromptOrMixedRows) {
  at::manual_seed(31);
  const Options o = Opt(4, 4, WindowKind::kTerrace);
  const Case c = RandomCase(2, 2, 1, 9, 4, 3);
  // Position 0: the empty state, as without one.
  const State empty = EmptyState(2, 2, 1, FeatureDim(c.w.maps, 4), 4, o, c.q.options());
  const PrefillResult from_empty = Prefill(c.q, c.k, c.v, c.w, o, &empty);
  const PrefillResult plain = Prefill(c.q, c.k, c.v, c.w, o);
  EXPECT_TRUE(at::equal(from_empty.y, plain.y));
  ExpectCloseState(from_empty.state, plain.state, "position 0");
  // No tokens: no output, the same state.
  const Case none = Slice(c, 9, 0);
  const PrefillResult same = Prefill(none.q, none.k, none.v, c.w, o, &plain.state);
  EXPECT_EQ(same.y.size(2), 0);
  ExpectCloseState(same.state, plain.state, "empty prompt");
  // Rows at different positions cannot continue together.
  State mixed = CloneState(plain.state);
  mixed.position[1] = 5;
  const std::string msg = ErrorOf([&] { Prefill(c.q, c.k, c.v, c.w, o, &mixed); });
  EXPECT_NE(msg.find("lolcats::Prefill: the initial state's rows sit at different positions"),
            std::string::npos)
      << msg;
  // The state is checked against the options (a sliding ring is W slots).
  const std::string bad =
      ErrorOf([&] { Prefill(c.q, c.k, c.v, c.w, Opt(4, 4, WindowKind::kSliding), &plain.state); });
  EXPECT_NE(bad.find("state.k_window and state.v_window must be"), std::string::npos) << bad;
}

TEST(Lolcats, GradientsMatchFiniteDifferencesAndReference) {
  at::manual_seed(26);
  for (WindowKind kind : {WindowKind::kSliding, WindowKind::kTerrace}) {
    const auto run = [&](bool parallel, const Options& o) {
      return [=](const std::vector<at::Tensor>& in) {
        Weights w;
        w.maps.q_weight = in[3];
        w.maps.k_weight = in[4];
        w.window_logit = in[5];
        return parallel ? ForwardParallel(in[0], in[1], in[2], w, o)
                        : ForwardReference(in[0], in[1], in[2], w, o);
      };
    };
    const Options small_opt = Opt(2, 3, kind);
    const Case s = RandomCase(1, 2, 1, 8, 3, 2);
    EXPECT_LT(GradCheck(run(true, small_opt),
                        {s.q, s.k, s.v, s.w.maps.q_weight, s.w.maps.k_weight, s.w.window_logit}),
              1e-6)
        << Name(kind);

    const Options o = Opt(5, 4, kind);
    const Case c = RandomCase(2, 4, 2, 27, 6, 4);
    const std::vector<at::Tensor> in{
        c.q, c.k, c.v, c.w.maps.q_weight, c.w.maps.k_weight, c.w.window_logit};
    const at::Tensor r = at::randn(c.q.sizes(), at::kDouble);
    const auto gp = Grads(run(true, o), in, r);
    const auto gr = Grads(run(false, o), in, r);
    for (size_t i = 0; i < in.size(); ++i) {
      EXPECT_LT(RelErr(gp[i], gr[i]), 1e-9) << Name(kind) << " input " << i;
    }
  }
}

TEST(Lolcats, Float32KeepsDtypeAndTracksFloat64) {
  at::manual_seed(27);
  const Case c = RandomCase(1, 2, 2, 90, 8, 4);
  Weights w32 = c.w;
  w32.maps.q_weight = c.w.maps.q_weight.to(at::kFloat);
  w32.maps.k_weight = c.w.maps.k_weight.to(at::kFloat);
  w32.window_logit = c.w.window_logit.to(at::kFloat);
  const at::Tensor y = ForwardParallel(c.q.to(at::kFloat), c.k.to(at::kFloat), c.v.to(at::kFloat),
                                       w32, Opt(16, 32, WindowKind::kSliding));
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_LT(RelErr(y, ForwardReference(c.q, c.k, c.v, c.w, Opt(16, 32, WindowKind::kSliding))),
            1e-5);
}

TEST(Lolcats, EmptySequenceGivesEmptyOutputAndZeroState) {
  const Case c = RandomCase(2, 4, 2, 0, 8, 3);
  EXPECT_EQ(ForwardParallel(c.q, c.k, c.v, c.w).sizes(), c.q.sizes());
  const PrefillResult pre = Prefill(c.q, c.k, c.v, c.w);
  EXPECT_EQ(pre.state.k_window.sizes(), at::IntArrayRef({2, 2, 64, 8}));
  EXPECT_EQ(pre.state.position.sum().item<int64_t>(), 0);
}

TEST(Lolcats, RejectsBadArgumentsWithShapesInMessage) {
  const Case c = RandomCase(1, 4, 2, 6, 8, 3);
  Weights w = c.w;
  w.window_logit = at::zeros({2}, at::kDouble);
  std::string msg = ErrorOf([&] { ForwardParallel(c.q, c.k, c.v, w, Options{}); });
  EXPECT_NE(msg.find("window_logit must be [4]"), std::string::npos) << msg;
  msg = ErrorOf([&] { ForwardParallel(c.q, c.k, c.v, c.w, Opt(0, 4, WindowKind::kSliding)); });
  EXPECT_NE(msg.find("window must be >= 1"), std::string::npos) << msg;
  // A sliding-window state cannot be decoded as a terrace one (ring size differs).
  State st = EmptyState(1, 4, 2, 6, 8, Opt(4, 4, WindowKind::kSliding), c.q.options());
  msg = ErrorOf([&] {
    DecodeStep(st, c.q.narrow(2, 0, 1), c.k.narrow(2, 0, 1), c.v.narrow(2, 0, 1), c.w,
               Opt(4, 4, WindowKind::kTerrace));
  });
  EXPECT_NE(msg.find("state.k_window and state.v_window must be [1, 2, 8, 8]"), std::string::npos)
      << msg;
}

}  // namespace
}  // namespace linearize::kernels::lolcats
