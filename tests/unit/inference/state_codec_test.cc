// Session state blobs: encode -> decode continues exactly where the original
// would, and corrupt, truncated, foreign or future blobs are refused.
#include "common/runtime/state_codec.h"

#include <ATen/ATen.h>

#include <cstring>

#include "common/io/sha256.h"
#include "common/model/load.h"
#include "gtest/gtest.h"
#include "tests/unit/inference/tiny_models.h"

namespace linearize::runtime {
namespace {

at::Tensor Ids(std::vector<int64_t> v) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).view({1, -1});
}

class StateCodecTest : public ::testing::TestWithParam<std::optional<model::Recipe>> {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("codec");
    testing::WriteTinyModel(dir_, GetParam());
    auto loaded = model::LoadModel(dir_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = std::move(*loaded);
  }
  void TearDown() override { testing::RemoveTree(dir_); }
  std::string dir_;
  model::LoadedModel loaded_;
};

TEST_P(StateCodecTest, DecodedStateContinuesExactly) {
  const model::LlamaModel& m = *loaded_.model;
  auto memory = m.NewMemory(1);
  auto logits = m.Forward(Ids({5, 17, 300, 42, 9, 1200, 77}), memory.get(),
                          model::LlamaModel::Logits::kLast);
  ASSERT_TRUE(logits.ok()) << logits.status();
  // One decode step too, so the state is past the prefill path.
  ASSERT_TRUE(m.Forward(Ids({88}), memory.get()).ok());
  auto blob = EncodeState(*memory, logits->view({-1}), "sha256:test");
  ASSERT_TRUE(blob.ok()) << blob.status();

  auto info = InspectState(*blob);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->position, 8);
  EXPECT_EQ(info->format_version, kStateFormatVersion);
  auto decoded = DecodeState(*blob, m, "sha256:test");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->memory->position(), 8);
  EXPECT_TRUE(at::equal(decoded->logits, logits->view({-1})));

  auto a = m.Forward(Ids({3, 1000, 64}), memory.get());
  auto b = m.Forward(Ids({3, 1000, 64}), decoded->memory.get());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(at::equal(*a, *b));
}

TEST_P(StateCodecTest, RefusesCorruptForeignAndUnknownBlobs) {
  const model::LlamaModel& m = *loaded_.model;
  auto memory = m.NewMemory(1);
  ASSERT_TRUE(m.Forward(Ids({5, 6, 7}), memory.get()).ok());
  const std::string blob = *EncodeState(*memory, at::Tensor(), "sha256:a");

  std::string flipped = blob;
  flipped[flipped.size() / 2] ^= 0x40;
  auto s = DecodeState(flipped, m, "sha256:a");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("checksum"), std::string::npos) << s.status();

  EXPECT_EQ(DecodeState(blob.substr(0, 40), m, "sha256:a").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeState("not a state at all", m, "sha256:a").status().code(),
            absl::StatusCode::kInvalidArgument);

  auto foreign = DecodeState(blob, m, "sha256:b");
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kFailedPrecondition);

  // A later format version, correctly checksummed, is refused by name.
  std::string future = blob.substr(0, blob.size() - 32);
  const uint32_t v = 99;
  std::memcpy(future.data() + 8, &v, 4);
  const auto digest = io::Sha256Of(future);
  future.append(reinterpret_cast<const char*>(digest.data()), 32);
  auto f = DecodeState(future, m, "sha256:a");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(f.status().message()).find("format_version"), std::string::npos);
}

std::string Name(const ::testing::TestParamInfo<std::optional<model::Recipe>>& p) {
  return p.param ? std::string(model::RecipeName(*p.param)) : "softmax";
}

INSTANTIATE_TEST_SUITE_P(Models, StateCodecTest,
                         ::testing::Values(std::nullopt, model::Recipe::kLolcats,
                                           model::Recipe::kLizard, model::Recipe::kLinear),
                         Name);

}  // namespace
}  // namespace linearize::runtime
