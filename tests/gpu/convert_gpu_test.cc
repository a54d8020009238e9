// The conversion pipeline on a CUDA device: in float32 (TF32 off) it computes
// what the CPU computes, up to rounding, and in bf16 autocast both stages
// still learn. The tiny llama3_scaled fixture teacher, 30 steps per stage.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "common/convert/pipeline.h"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::MakeText;
using testing::TempDir;

ConvertOptions Options(const TempDir& dir, const std::string& name, const std::string& data) {
  ConvertOptions o;
  o.teacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled";
  o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLolcats);
  o.attention.window = 32;
  o.attention.feature_dim = 64;
  o.data.files = {data};
  o.data.seq_len = 64;
  o.data.validation_fraction = 0.1;
  o.batch_size = 4;
  o.tokens = 2 * 30 * 4 * 64;
  o.stage1.lr = 0.05;
  o.stage1.eval_every = 10;
  o.stage2.eval_every = 10;
  o.checkpoint_every = 0;
  o.tf32 = false;
  o.out_dir = dir.path() + "/" + name;
  return o;
}

double Rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

TEST(ConvertGpu, Float32OnCudaMatchesTheCpu) {
  ASSERT_TRUE(at::hasCUDA());
  TempDir dir;
  const std::string data = dir.path() + "/train.txt";
  testing::WriteText(data, MakeText(3000, 5));
  ConvertOptions cpu = Options(dir, "cpu", data);
  ConvertOptions gpu = Options(dir, "gpu", data);
  gpu.device = "cuda";
  auto a = Convert(cpu);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Convert(gpu);
  ASSERT_TRUE(b.ok()) << b.status();
  std::printf("cpu: mse %.6g -> %.6g, ppl %.5g -> %.5g\ngpu: mse %.6g -> %.6g, ppl %.5g -> %.5g\n",
              a->initial_val_mse, a->final_val_mse, a->student_val_ppl_before_finetune,
              a->student_val_ppl, b->initial_val_mse, b->final_val_mse,
              b->student_val_ppl_before_finetune, b->student_val_ppl);
  // Before any step the two compute the same function.
  EXPECT_LT(Rel(b->initial_val_mse, a->initial_val_mse), 1e-4);
  EXPECT_LT(Rel(b->teacher_val_ppl, a->teacher_val_ppl), 1e-4);
  // After 60 steps rounding differences have grown, but not the results.
  EXPECT_LT(Rel(b->final_val_mse, a->final_val_mse), 0.05);
  EXPECT_LT(Rel(std::log(b->student_val_ppl), std::log(a->student_val_ppl)), 0.02);
  EXPECT_LT(b->final_val_mse, b->initial_val_mse);
}

TEST(ConvertGpu, Bfloat16AutocastOnCudaLearns) {
  ASSERT_TRUE(at::hasCUDA());
  TempDir dir;
  const std::string data = dir.path() + "/train.txt";
  testing::WriteText(data, MakeText(3000, 6));
  ConvertOptions o = Options(dir, "bf16", data);
  o.device = "cuda";
  o.bf16 = true;
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf("bf16 gpu: mse %.6g -> %.6g, ppl %.5g -> %.5g\n", r->initial_val_mse,
              r->final_val_mse, r->student_val_ppl_before_finetune, r->student_val_ppl);
  EXPECT_LE(r->final_val_mse * 2, r->initial_val_mse);
  EXPECT_LT(r->student_val_ppl, r->student_val_ppl_before_finetune);
}

}  // namespace
}  // namespace linearize::convert
