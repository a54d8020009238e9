// Per-layer attention error: a student layer that scales the teacher's own
// softmax output by (1 + eps) must show relative error |eps| and an MSE of
// eps^2 times the mean square of the outputs it saw (summed here, inside the
// layer, independently of the code under test), over several chunks.
#include "common/eval/layer_errors.h"

#include <ATen/ATen.h>

#include <cmath>
#include <memory>

#include "common/model/linear_attention_config.h"
#include "common/model/load.h"
#include "common/model/softmax_attention.h"
#include "common/model/student_attention.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

struct Seen {
  double square_sum = 0;
  int64_t elements = 0;
};

class ScaledSoftmax final : public model::AttentionLayer {
 public:
  ScaledSoftmax(const io::ModelConfig& c, double scale, Seen* seen)
      : inner_(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.sliding_window),
        scale_(scale),
        seen_(seen) {}
  std::string_view name() const override { return "scaled"; }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     model::AttentionState* state, int64_t position) const override {
    const at::Tensor y = inner_.Forward(q, k, v, state, position);
    seen_->square_sum += y.to(at::kDouble).pow(2).sum().item<double>();
    seen_->elements += y.numel();
    return y * scale_;
  }
  std::unique_ptr<model::AttentionState> NewState(int64_t b, int64_t c,
                                                  const at::TensorOptions& o) const override {
    return inner_.NewState(b, c, o);
  }

 private:
  model::SoftmaxAttention inner_;
  double scale_;
  Seen* seen_;
};

std::vector<int32_t> Ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>((i * 7919 + 13) % vocab));
  return ids;
}

TEST(LayerErrors, ScaledTeacherLayersGiveTheirScale) {
  auto teacher = model::LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  auto student = model::LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(student.ok()) << student.status();
  const io::ModelConfig& c = student->config;
  Seen exact, scaled;
  student->model->SetAttention(0, std::make_unique<ScaledSoftmax>(c, 1.0, &exact));
  student->model->SetAttention(1, std::make_unique<ScaledSoftmax>(c, 1.25, &scaled));
  const std::vector<int32_t> ids = Ids(150, c.vocab_size);
  absl::StatusOr<std::vector<LayerError>> r =
      CompareAttentionLayers(*teacher->model, *student->model, ids, 64);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);  // only the layers that are not softmax
  EXPECT_EQ((*r)[0].layer, 0);
  EXPECT_EQ((*r)[1].layer, 1);
  EXPECT_EQ((*r)[1].tokens, 150);
  EXPECT_EQ((*r)[0].mse, 0.0);
  EXPECT_EQ((*r)[0].relative, 0.0);
  ASSERT_GT(scaled.elements, 0);
  EXPECT_NEAR((*r)[1].relative, 0.25, 1e-6);
  EXPECT_NEAR((*r)[1].mse / (0.0625 * scaled.square_sum / static_cast<double>(scaled.elements)),
              1.0, 1e-6);
}

TEST(LayerErrors, AConvertedStudentIsCloseButNotExact) {
  auto teacher = model::LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  auto student = model::LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(student.ok()) << student.status();
  const io::ModelConfig& c = student->config;
  const model::LinearAttentionConfig lc =
      model::DefaultLinearAttentionConfig(model::Recipe::kLolcats);
  for (int64_t l = 0; l < student->model->num_layers(); ++l) {
    auto a = model::MakeStudentAttention(lc, c, model::InitStudentTensors(lc, c, l, 3));
    ASSERT_TRUE(a.ok()) << a.status();
    student->model->SetAttention(l, *std::move(a));
  }
  const std::vector<int32_t> ids = Ids(200, c.vocab_size);
  absl::StatusOr<std::vector<LayerError>> r =
      CompareAttentionLayers(*teacher->model, *student->model, ids, 100);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(static_cast<int64_t>(r->size()), c.num_hidden_layers);
  for (const LayerError& e : *r) {
    EXPECT_GT(e.relative, 0.0) << e.layer;  // the window (64) is shorter than the chunk
    EXPECT_LT(e.relative, 1.0) << e.layer;  // but the window carries most of it
    EXPECT_TRUE(std::isfinite(e.mse));
  }
  // One pass of the teacher for both: the same layer errors (the chunks
  // agree, 2 x 100 tokens) and the comparison CompareModels gives.
  absl::StatusOr<ComparisonWithLayers> both =
      CompareModelsAndLayers(*teacher->model, *student->model, ids, 100);
  ASSERT_TRUE(both.ok()) << both.status();
  absl::StatusOr<Comparison> alone = CompareModels(*teacher->model, *student->model, ids, 100);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(both->comparison.kl, alone->kl);
  EXPECT_EQ(both->comparison.teacher_perplexity, alone->teacher_perplexity);
  EXPECT_EQ(both->comparison.top1_agreement, alone->top1_agreement);
  ASSERT_EQ(both->layers.size(), r->size());
  for (size_t i = 0; i < r->size(); ++i) {
    EXPECT_EQ(both->layers[i].layer, (*r)[i].layer);
    EXPECT_EQ(both->layers[i].tokens, (*r)[i].tokens);
    EXPECT_NEAR(both->layers[i].relative, (*r)[i].relative, 1e-12);
  }
  EXPECT_FALSE(CompareAttentionLayers(*teacher->model, *student->model, {}, 100).ok());
  EXPECT_FALSE(CompareAttentionLayers(*teacher->model, *student->model, ids, 1).ok());
  const std::vector<int32_t> bad = {1, 2, static_cast<int32_t>(c.vocab_size)};
  EXPECT_FALSE(CompareAttentionLayers(*teacher->model, *student->model, bad, 100).ok());
}

}  // namespace
}  // namespace linearize::eval
