#include "common/model/rope.h"

#include <ATen/ATen.h>

#include <cmath>

#include "gtest/gtest.h"
#include "kernels/rope/rope.h"

namespace linearize::model {
namespace {

io::ModelConfig Config(int64_t head_dim, double theta) {
  io::ModelConfig c;
  c.head_dim = head_dim;
  c.rope_theta = theta;
  return c;
}

TEST(RotaryEmbedding, DefaultFrequencies) {
  absl::StatusOr<RotaryEmbedding> rope = RotaryEmbedding::Create(Config(8, 10000.0));
  ASSERT_TRUE(rope.ok()) << rope.status();
  const at::Tensor f = rope->inv_freq();
  ASSERT_EQ(f.size(0), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f[i].item<float>(), std::pow(10000.0, -2.0 * i / 8), 1e-7);
  }
}

TEST(RotaryEmbedding, LinearScalingDividesFrequencies) {
  io::ModelConfig c = Config(8, 10000.0);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4.0;
  absl::StatusOr<RotaryEmbedding> scaled = RotaryEmbedding::Create(c);
  absl::StatusOr<RotaryEmbedding> plain = RotaryEmbedding::Create(Config(8, 10000.0));
  ASSERT_TRUE(scaled.ok() && plain.ok());
  EXPECT_TRUE(at::allclose(scaled->inv_freq() * 4, plain->inv_freq()));
}

// Llama 3.1's schedule: high frequencies kept, low ones divided by factor,
// those between interpolated.
TEST(RotaryEmbedding, Llama3Bands) {
  io::ModelConfig c = Config(16, 500000.0);
  c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 64};
  absl::StatusOr<RotaryEmbedding> scaled = RotaryEmbedding::Create(c);
  absl::StatusOr<RotaryEmbedding> plain = RotaryEmbedding::Create(Config(16, 500000.0));
  ASSERT_TRUE(scaled.ok() && plain.ok());
  const at::Tensor ratio = plain->inv_freq() / scaled->inv_freq();
  for (int i = 0; i < 8; ++i) {
    const double wavelen = 2 * M_PI / plain->inv_freq()[i].item<float>();
    const double r = ratio[i].item<float>();
    if (wavelen < 16) EXPECT_NEAR(r, 1.0, 1e-6) << i;
    else if (wavelen > 64) EXPECT_NEAR(r, 8.0, 1e-5) << i;
    else EXPECT_TRUE(r > 1.0 && r < 8.0) << i << " " << r;
  }
}

TEST(RotaryEmbedding, RejectsBadConfigs) {
  EXPECT_FALSE(RotaryEmbedding::Create(Config(7, 10000.0)).ok());
  EXPECT_FALSE(RotaryEmbedding::Create(Config(8, 0.0)).ok());
  io::ModelConfig c = Config(8, 10000.0);
  c.rope_scaling.type = "yarn";
  absl::StatusOr<RotaryEmbedding> r = RotaryEmbedding::Create(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("yarn"), std::string::npos);
  EXPECT_FALSE(RotaryEmbedding::Create(Config(8, 10000.0), at::ones({3})).ok());
}

// rotate_half convention: position p rotates the pair (x[i], x[i + D/2]) by
// p * inv_freq[i].
TEST(Rotary, RotatesHalfPairs) {
  absl::StatusOr<RotaryEmbedding> rope = RotaryEmbedding::Create(Config(4, 100.0));
  ASSERT_TRUE(rope.ok());
  const auto [cos, sin] = rope->CosSin(/*start=*/3, /*length=*/1, at::kFloat);
  const at::Tensor x = at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 1, 4});
  const at::Tensor y = kernels::Rotary(x, cos, sin).flatten();
  const double a0 = 3 * 1.0, a1 = 3 * 0.1;  // inv_freq = 1, 100^-0.5
  EXPECT_NEAR(y[0].item<float>(), 1 * std::cos(a0) - 3 * std::sin(a0), 1e-5);
  EXPECT_NEAR(y[2].item<float>(), 3 * std::cos(a0) + 1 * std::sin(a0), 1e-5);
  EXPECT_NEAR(y[1].item<float>(), 2 * std::cos(a1) - 4 * std::sin(a1), 1e-5);
  EXPECT_NEAR(y[3].item<float>(), 4 * std::cos(a1) + 2 * std::sin(a1), 1e-5);
}

}  // namespace
}  // namespace linearize::model
