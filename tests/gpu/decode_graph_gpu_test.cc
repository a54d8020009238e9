// DecodeGraph on the GPU: replaying the captured step gives the logits and the
// state that plain Forward steps give, for batch 1 and batch 3; models it
// cannot capture are refused with FAILED_PRECONDITION and stay usable.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <string>

#include "common/model/decode_graph.h"
#include "common/model/linear_attention_config.h"
#include "tests/gpu/gpu_model_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::model {
namespace {

struct Case {
  Recipe recipe;
  at::ScalarType dtype;
  int64_t batch;
};

class DecodeGraphGpu : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeGraphGpu, ReplaysEqualPlainSteps) {
  ASSERT_TRUE(at::hasCUDA());
  const Case c = GetParam();
  LoadedModel loaded = LoadOnCuda(c.dtype);
  LlamaModel& m = *loaded.model;
  Convert(m, DefaultLinearAttentionConfig(c.recipe));
  const at::NoGradGuard no_grad;
  std::unique_ptr<Memory> plain = m.NewMemory(c.batch);
  ASSERT_TRUE(m.Forward(RandomIds(m.vocab_size(), c.batch, 37, 1), plain.get()).ok());
  std::unique_ptr<Memory> replayed = plain->Clone();
  testing::PoisonCudaAllocator();
  absl::StatusOr<std::unique_ptr<DecodeGraph>> graph = DecodeGraph::Capture(m, replayed.get());
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(replayed->position(), 37);
  const double tol = c.dtype == at::kFloat ? 1e-4 : 2e-2;
  at::Tensor ids = RandomIds(m.vocab_size(), c.batch, 1, 2).view({-1});
  for (int step = 0; step < 8; ++step) {
    absl::StatusOr<at::Tensor> want =
        m.Forward(ids.view({-1, 1}), plain.get(), LlamaModel::Logits::kLast);
    ASSERT_TRUE(want.ok()) << want.status();
    absl::StatusOr<at::Tensor> got = (*graph)->Step(ids.cpu());
    ASSERT_TRUE(got.ok()) << got.status();
    const at::Tensor w = want->reshape({c.batch, -1});
    EXPECT_LT(testing::RelativeError(*got, w), tol) << "step " << step;
    ids = w.argmax(-1);  // feed back the plain path's choice to both
  }
  EXPECT_EQ(replayed->position(), plain->position());
  const auto a = plain->Export(), b = replayed->Export();
  for (size_t l = 0; l < a.size(); ++l) {
    for (size_t k = 0; k < a[l].size(); ++k) {
      EXPECT_LT(testing::RelativeError(b[l][k].second, a[l][k].second), tol)
          << "layer " << l << " " << a[l][k].first;
    }
  }
  EXPECT_FALSE((*graph)->Step(at::zeros({c.batch + 1}, at::kLong)).ok());
}

INSTANTIATE_TEST_SUITE_P(Recipes, DecodeGraphGpu,
                         ::testing::Values(Case{Recipe::kLolcats, at::kFloat, 1},
                                           Case{Recipe::kLolcats, at::kBFloat16, 3},
                                           Case{Recipe::kLinear, at::kFloat, 3},
                                           Case{Recipe::kLizard, at::kBFloat16, 2}));

TEST(DecodeGraphGpuRefusals, KvCachesAndHostSyncsAreRefusedAndTheModelStaysUsable) {
  ASSERT_TRUE(at::hasCUDA());
  LoadedModel loaded = LoadOnCuda(at::kFloat);
  LlamaModel& m = *loaded.model;
  const at::NoGradGuard no_grad;
  std::unique_ptr<Memory> teacher = m.NewMemory(1);
  absl::StatusOr<std::unique_ptr<DecodeGraph>> g = DecodeGraph::Capture(m, teacher.get());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition) << g.status();

  // The terrace window's decode has no kernel: its LibTorch step asks the
  // host whether a block leaves the window, which capture cannot record.
  LinearAttentionConfig terrace = DefaultLinearAttentionConfig(Recipe::kLolcats);
  terrace.terrace = true;
  Convert(m, terrace);
  std::unique_ptr<Memory> mem = m.NewMemory(1);
  ASSERT_TRUE(m.Forward(RandomIds(m.vocab_size(), 1, 20, 3), mem.get()).ok());
  const std::unique_ptr<Memory> before = mem->Clone();
  g = DecodeGraph::Capture(m, mem.get());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition) << g.status();
  EXPECT_EQ(mem->position(), 20);
  absl::StatusOr<at::Tensor> a = m.Forward(RandomIds(m.vocab_size(), 1, 1, 4), mem.get());
  absl::StatusOr<at::Tensor> b = m.Forward(RandomIds(m.vocab_size(), 1, 1, 4), before.get());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_LT(testing::RelativeError(*a, *b), 1e-6);
}

}  // namespace
}  // namespace linearize::model
