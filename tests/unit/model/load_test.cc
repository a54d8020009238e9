#include "common/model/load.h"

#include <cstdlib>
#include <filesystem>
#include <string>

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
