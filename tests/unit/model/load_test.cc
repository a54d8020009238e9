#include "common/model/load.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::model {
namespace {

TEST(LoadModel, LoadsAHuggingFaceDirectory) {
  absl::StatusOr<LoadedModel> loaded = LoadModel(testing::ModelDir("llama"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.architecture, "llama");
  EXPECT_EQ(loaded->config.num_hidden_layers, 2);
  EXPECT_EQ(loaded->model->vocab_size(), 512);
  EXPECT_EQ(loaded->model->dtype(), at::kFloat);
  // The tiny fixtures have no tokenizer and no chat template.
  EXPECT_EQ(loaded->tokenizer, nullptr);
  EXPECT_EQ(loaded->chat_format, tokenizer::ChatFormat::kPlain);
  EXPECT_EQ(loaded->default_system_prompt, "");
  EXPECT_EQ(StopTokenIds(*loaded), std::vector<int32_t>{2});
}

TEST(LoadModel, ConvertsToTheRequestedDtype) {
  LoadOptions options;
  options.weights.dtype = at::kBFloat16;
  absl::StatusOr<LoadedModel> loaded = LoadModel(testing::ModelDir("qwen2"), options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model->dtype(), at::kBFloat16);
  const testing::Reference ref = testing::ReadReference("qwen2");
  absl::StatusOr<at::Tensor> logits = loaded->model->Forward(testing::Ids(ref.input_ids));
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(logits->scalar_type(), at::kFloat);
  // bf16 keeps ~3 significant digits: close, not exact.
  EXPECT_LT(testing::RelativeError((*logits)[0], ref.logits), 0.1);
}

TEST(LoadModel, ReportsBadPaths) {
  absl::StatusOr<LoadedModel> missing = LoadModel("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model"), std::string::npos);
  absl::StatusOr<LoadedModel> not_a_model =
      LoadModel(testing::ModelDir("llama") + "/config.json");
  ASSERT_FALSE(not_a_model.ok());
  EXPECT_EQ(not_a_model.status().code(), absl::StatusCode::kInvalidArgument);
}

// A layer range loads those decoder layers' weights and nothing else (no
// other layer, no embeddings, final norm or head), runs them as the whole
// model does, and refuses every other forward by name.
TEST(LoadModel, LayerRangeLoadsOnlyThoseLayers) {
  for (const std::string& path :
       {testing::ModelDir("llama3_scaled"), testing::FixturePath("models/llama3_scaled.gguf")}) {
    SCOPED_TRACE(path);
    absl::StatusOr<LoadedModel> whole = LoadModel(path);
    ASSERT_TRUE(whole.ok()) << whole.status();
    LoadOptions options;
    options.layers = LayerRange{1, 1};
    absl::StatusOr<LoadedModel> block = LoadModel(path, options);
    ASSERT_TRUE(block.ok()) << block.status();
    const LlamaModel& m = *block->model;
    EXPECT_EQ(block->config.num_hidden_layers, 2);  // the whole model's config
    EXPECT_EQ(m.num_layers(), 2);
    ASSERT_TRUE(m.only_layers().has_value());
    EXPECT_EQ(m.dtype(), at::kFloat);
    const ModelWeights& w = m.weights();
    EXPECT_FALSE(w.embed.defined());
    EXPECT_FALSE(w.final_norm.defined());
    EXPECT_FALSE(w.lm_head.defined());
    EXPECT_FALSE(w.layers[0].q_proj.defined());
    EXPECT_FALSE(w.layers[0].down_proj.defined());
    EXPECT_FALSE(w.layers[0].input_norm.defined());
    const LayerWeights& want = whole->model->weights().layers[1];
    const LayerWeights& got = w.layers[1];
    for (const auto& [a, b] : {std::pair{&got.q_proj, &want.q_proj}, {&got.k_proj, &want.k_proj},
                               {&got.v_proj, &want.v_proj}, {&got.o_proj, &want.o_proj},
                               {&got.input_norm, &want.input_norm},
                               {&got.post_norm, &want.post_norm}, {&got.gate_proj, &want.gate_proj},
                               {&got.up_proj, &want.up_proj}, {&got.down_proj, &want.down_proj}}) {
      ASSERT_TRUE(a->defined());
      EXPECT_TRUE(at::equal(*a, *b));
    }
    // Exactly layer 1's parameters are held.
    const int64_t layer_params = ParameterCount(block->config, w);
    int64_t expected = 0;
    for (const at::Tensor* t : {&want.q_proj, &want.k_proj, &want.v_proj, &want.o_proj,
                                &want.input_norm, &want.post_norm, &want.gate_proj, &want.up_proj,
                                &want.down_proj}) {
      expected += t->numel();
    }
    EXPECT_EQ(layer_params, expected);
    EXPECT_LT(layer_params, ParameterCount(whole->config, whole->model->weights()) / 2);

    const at::Tensor hidden = at::randn({2, 9, whole->config.hidden_size});
    absl::StatusOr<at::Tensor> a = m.ForwardLayers(hidden, 1, 1);
    absl::StatusOr<at::Tensor> b = whole->model->ForwardLayers(hidden, 1, 1);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(at::equal(*a, *b));

    absl::StatusOr<at::Tensor> outside = m.ForwardLayers(hidden, 0, 2);
    ASSERT_FALSE(outside.ok());
    EXPECT_EQ(outside.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(outside.status().message().find("holds only layers [1, 2)"), std::string::npos)
        << outside.status();
    const at::Tensor ids = at::zeros({1, 4}, at::kLong);
    for (const absl::Status& s : {m.Forward(ids).status(), m.Embed(ids).status()}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_NE(s.message().find("layers [1, 2)"), std::string::npos) << s;
    }

    for (const LayerRange bad : {LayerRange{2, 1}, LayerRange{1, 2}, LayerRange{0, 0},
                                 LayerRange{-1, 1}}) {
      options.layers = bad;
      absl::StatusOr<LoadedModel> refused = LoadModel(path, options);
      ASSERT_FALSE(refused.ok());
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(refused.status().message().find(
                    absl::StrCat("layers [", bad.first, ", ", bad.end(), ")")),
                std::string::npos)
          << refused.status();
      EXPECT_NE(refused.status().message().find(path), std::string::npos) << refused.status();
    }
  }
}

TEST(FindDefaultModel, HonoursTheEnvironment) {
  const std::string path = testing::FixturePath("models/llama3_scaled.gguf");
  ASSERT_EQ(setenv("LINEARIZE_MODEL", path.c_str(), 1), 0);
  absl::StatusOr<std::string> found = FindDefaultModel();
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, path);
  ASSERT_EQ(setenv("LINEARIZE_MODEL", "/nonexistent/x.gguf", 1), 0);
  found = FindDefaultModel();
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(found.status().message().find("/nonexistent/x.gguf"), std::string::npos);
  ASSERT_EQ(unsetenv("LINEARIZE_MODEL"), 0);
  found = FindDefaultModel();
  if (found.ok()) {
    EXPECT_TRUE(std::filesystem::exists(*found));
    EXPECT_TRUE(found->ends_with(kDefaultModelFile));
  } else {
    EXPECT_EQ(found.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(found.status().message().find("scripts/setup"), std::string::npos);
  }
}

}  // namespace
}  // namespace linearize::model
