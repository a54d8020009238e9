// A fused model (LlamaModel::FuseProjections: one q/k/v and one gate/up
// product; at decode batch sizes the small-batch kernel with the norms and
// the SwiGLU gate folded in) gives the logits the unfused model gives, over
// a 37-token prefill and 8 greedy steps: every recipe (Lizard reads the
// normalised input, so its input norm stays unfolded), the softmax teacher,
// and 5 rows (past the kernel's 4, so cuBLAS).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <optional>

#include "tests/gpu/gpu_model_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace linearize::model {
namespace {

struct Case {
  std::optional<Recipe> recipe;  // none: the softmax teacher with its KV cache
  at::ScalarType dtype;
  int64_t batch;
};

class FusedDecodeGpu : public ::testing::TestWithParam<Case> {};

TEST_P(FusedDecodeGpu, StepsEqualTheUnfusedModel) {
  ASSERT_TRUE(at::hasCUDA());
  const Case c = GetParam();
  LoadedModel plain = LoadOnCuda(c.dtype), fused = LoadOnCuda(c.dtype);
  if (c.recipe) {
    Convert(*plain.model, DefaultLinearAttentionConfig(*c.recipe));
    Convert(*fused.model, DefaultLinearAttentionConfig(*c.recipe));
  }
  fused.model->FuseProjections();
  const at::NoGradGuard no_grad;
  std::unique_ptr<Memory> plain_memory = plain.model->NewMemory(c.batch);
  std::unique_ptr<Memory> fused_memory = fused.model->NewMemory(c.batch);
  const double tol = c.dtype == at::kFloat ? 1e-4 : 5e-2;
  at::Tensor ids = RandomIds(plain.model->vocab_size(), c.batch, 37, 1);
  for (int step = 0; step <= 8; ++step) {
    absl::StatusOr<at::Tensor> want =
        plain.model->Forward(ids, plain_memory.get(), LlamaModel::Logits::kLast);
    absl::StatusOr<at::Tensor> got =
        fused.model->Forward(ids, fused_memory.get(), LlamaModel::Logits::kLast);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_FALSE(got->isnan().any().item<bool>()) << "step " << step;
    EXPECT_LT(testing::RelativeError(*got, *want), tol) << "step " << step;
    ids = want->reshape({c.batch, -1}).argmax(-1).view({c.batch, 1});
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FusedDecodeGpu,
                         ::testing::Values(Case{Recipe::kLolcats, at::kFloat, 1},
                                           Case{Recipe::kLolcats, at::kBFloat16, 3},
                                           Case{Recipe::kLizard, at::kFloat, 2},
                                           Case{Recipe::kLizard, at::kBFloat16, 1},
                                           Case{Recipe::kLinear, at::kFloat, 4},
                                           Case{std::nullopt, at::kBFloat16, 1},
                                           Case{std::nullopt, at::kFloat, 5}));

}  // namespace
}  // namespace linearize::model
