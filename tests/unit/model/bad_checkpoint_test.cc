// Broken checkpoints fail with messages that name the file and the tensor.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "common/io/gguf.h"
#include "common/io/model_config.h"
#include "common/io/safetensors.h"
#include "common/model/gguf_weights.h"
#include "common/model/load.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/model/model_test_util.h"

namespace linearize::model {
namespace {

namespace fs = std::filesystem;

class BadCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("bad_ckpt");
    const std::string src = testing::ModelDir("qwen2");
    testing::CopyFile(src + "/config.json", (dir_ / "config.json").string());
    source_ = io::SafetensorsFile::Open(src + "/model.safetensors").value();
  }
  void TearDown() override { testing::RemoveTree(dir_.string()); }

  // Writes model.safetensors from the fixture's tensors, edited by `edit`.
  void WriteEdited(const std::function<void(std::vector<io::TensorToWrite>&)>& edit) {
    std::vector<io::TensorToWrite> tensors;
    for (const io::TensorView& t : source_->tensors()) {
      tensors.push_back({t.name, t.dtype, t.shape, t.data});
    }
    edit(tensors);
    ASSERT_TRUE(io::WriteSafetensors((dir_ / "model.safetensors").string(), tensors).ok());
  }

  void EditConfig(const std::string& key, const nlohmann::json& value) {
    nlohmann::json config = testing::ReadJson((dir_ / "config.json").string());
    config[key] = value;
    std::ofstream(dir_ / "config.json") << config.dump(1);
  }

  absl::Status Load() { return LoadModel(dir_.string()).status(); }

  static void ExpectMentions(const absl::Status& s, const std::vector<std::string>& needles) {
    ASSERT_FALSE(s.ok());
    std::printf("%s\n", s.ToString().c_str());
    for (const std::string& n : needles) {
      EXPECT_NE(s.message().find(n), std::string::npos) << "'" << n << "' not in: " << s;
    }
  }

  fs::path dir_;
  std::unique_ptr<io::SafetensorsFile> source_;
};

TEST_F(BadCheckpointTest, TheUneditedCopyLoads) {
  WriteEdited([](auto&) {});
  EXPECT_TRUE(Load().ok()) << Load();
}

TEST_F(BadCheckpointTest, MissingTensor) {
  WriteEdited([](std::vector<io::TensorToWrite>& ts) {
    std::erase_if(ts, [](const auto& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  ExpectMentions(Load(), {(dir_ / "model.safetensors").string(),
                          "model.layers.1.mlp.up_proj.weight", "missing", "[128, 64]"});
}

TEST_F(BadCheckpointTest, MissingBias) {
  WriteEdited([](std::vector<io::TensorToWrite>& ts) {
    std::erase_if(ts,
                  [](const auto& t) { return t.name == "model.layers.0.self_attn.k_proj.bias"; });
  });
  ExpectMentions(Load(), {"model.safetensors", "model.layers.0.self_attn.k_proj.bias", "[32]"});
}

TEST_F(BadCheckpointTest, WrongShape) {
  WriteEdited([](std::vector<io::TensorToWrite>& ts) {
    for (auto& t : ts) {
      if (t.name == "model.layers.0.self_attn.k_proj.weight") {
        t.shape = {16, 64};
        t.data = t.data.first(16 * 64 * 4);
      }
    }
  });
  ExpectMentions(Load(), {"model.safetensors", "model.layers.0.self_attn.k_proj.weight",
                          "[16, 64]", "expected [32, 64]"});
}

TEST_F(BadCheckpointTest, NonFloatTensor) {
  WriteEdited([](std::vector<io::TensorToWrite>& ts) {
    for (auto& t : ts) {
      if (t.name == "model.norm.weight") t.dtype = io::DType::kI32;
    }
  });
  ExpectMentions(Load(), {"model.safetensors", "model.norm.weight", "I32"});
}

TEST_F(BadCheckpointTest, TruncatedFile) {
  WriteEdited([](auto&) {});
  const fs::path file = dir_ / "model.safetensors";
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  const auto size = static_cast<off_t>(in.tellg());
  ASSERT_EQ(truncate(file.c_str(), size / 2), 0);
  ExpectMentions(Load(), {file.string()});
}

TEST_F(BadCheckpointTest, ConfigWithFewerLayers) {
  WriteEdited([](auto&) {});
  EditConfig("num_hidden_layers", 1);
  ExpectMentions(Load(), {"model.safetensors", "model.layers.1.", "num_hidden_layers"});
}

TEST_F(BadCheckpointTest, ConfigWithMoreLayers) {
  WriteEdited([](auto&) {});
  EditConfig("num_hidden_layers", 3);
  ExpectMentions(Load(), {"model.safetensors", "missing tensor model.layers.2."});
}

TEST_F(BadCheckpointTest, ConfigWithAnotherHiddenSize) {
  WriteEdited([](auto&) {});
  EditConfig("hidden_size", 96);
  EditConfig("head_dim", 24);
  ExpectMentions(Load(), {"model.safetensors", "model.embed_tokens.weight", "[512, 64]",
                          "expected [512, 96]"});
}

TEST_F(BadCheckpointTest, UntiedWithoutLmHead) {
  WriteEdited([](std::vector<io::TensorToWrite>& ts) {
    std::erase_if(ts, [](const auto& t) { return t.name == "lm_head.weight"; });
  });
  ExpectMentions(Load(), {"model.safetensors", "lm_head.weight", "tie_word_embeddings"});
}

TEST(BadShardedCheckpoint, MissingShardIsNamed) {
  const fs::path dir = testing::MakeTempDir("bad_sharded");
  const std::string src = testing::ModelDir("llama");
  for (const char* f : {"config.json", "model.safetensors.index.json",
                        "model-00001-of-00006.safetensors", "model-00002-of-00006.safetensors",
                        "model-00004-of-00006.safetensors", "model-00005-of-00006.safetensors",
                        "model-00006-of-00006.safetensors"}) {
    testing::CopyFile(src + "/" + f, (dir / f).string());
  }
  absl::StatusOr<LoadedModel> loaded = LoadModel(dir.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("model-00003-of-00006.safetensors"),
            std::string::npos)
      << loaded.status();
  testing::RemoveTree(dir.string());
}

// A GGUF whose tensor was renamed (same length, so the file stays valid).
TEST(BadGguf, MissingTensorIsNamed) {
  const std::string src = testing::FixturePath("models/llama3_scaled.gguf");
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string name = "blk.1.ffn_up.weight";
  const size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, name.size(), "blk.1.ffn_up.weighX");
  const fs::path path = fs::path(::testing::TempDir()) / "renamed.gguf";
  std::ofstream(path, std::ios::binary) << bytes;

  auto gguf = io::GgufFile::Open(path.string());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto config = io::ModelConfigFromGguf(**gguf);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<ModelWeights> weights = LoadGgufWeights(**gguf, *config, {});
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find(path.string()), std::string::npos)
      << weights.status();
  EXPECT_NE(weights.status().message().find("missing tensor blk.1.ffn_up.weight"),
            std::string::npos)
      << weights.status();
  ::remove(path.c_str());
}

}  // namespace
}  // namespace linearize::model
