// ConvertOptionsForTask: a job's ConversionSpec as the pipeline's options,
// and the specs it refuses rather than run something else.
#include "services/worker/spec_options.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <string>

#include "common/convert/fs_util.h"
#include "gtest/gtest.h"

namespace linearize::worker {
namespace {

class SpecOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spec_options_test_XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ASSERT_TRUE(convert::MakeDirs(root_ + "/models/tiny").ok());
    ASSERT_TRUE(convert::MakeDirs(root_ + "/data/dir").ok());
    for (const char* f : {"data/train.txt", "data/dir/b.txt", "data/dir/a.jsonl",
                          "data/dir/skip.csv", "data/bad.json"}) {
      std::ofstream(root_ + "/" + f) << "some text\n";
    }
  }
  void TearDown() override { (void)convert::RemoveTree(root_); }

  // A LoLCATs task as the scheduler hands it out (defaults filled in).
  v1::Task LolcatsTask() const {
    v1::Task t;
    t.set_kind(v1::STAGE_ATTENTION_TRANSFER);
    t.set_teacher_path("models/tiny");
    v1::ConversionSpec& s = *t.mutable_spec();
    s.mutable_recipe()->set_kind(v1::RECIPE_KIND_LOLCATS);
    auto* l = s.mutable_recipe()->mutable_lolcats();
    l->set_feature_dim(16);
    l->set_window_size(32);
    l->set_window_kind(v1::LolcatsParams::WINDOW_KIND_BLOCKED);
    l->set_window_factor_init(0.1f);
    auto* at = s.mutable_recipe()->mutable_attention_transfer()->mutable_training();
    at->set_token_budget(100 * 4 * 64);
    at->set_sequence_length(64);
    at->set_batch_size(4);
    at->set_learning_rate(0.05);
    at->set_lr_schedule(v1::LR_SCHEDULE_REDUCE_ON_PLATEAU);
    at->set_validation_interval_steps(10);
    at->set_early_stopping_patience(3);
    at->set_checkpoint_interval_steps(7);
    at->set_seed(42);
    at->set_warmup_steps(10);
    s.mutable_recipe()->mutable_attention_transfer()->set_mse_weight(500);
    auto* ft = s.mutable_recipe()->mutable_finetune()->mutable_training();
    ft->set_token_budget(100 * 4 * 64);
    ft->set_sequence_length(64);
    ft->set_batch_size(4);
    ft->set_learning_rate(1e-3);
    ft->set_lr_schedule(v1::LR_SCHEDULE_COSINE);
    ft->set_checkpoint_interval_steps(20);
    ft->set_seed(43);
    auto* lora = s.mutable_recipe()->mutable_finetune()->mutable_lora();
    lora->set_rank(4);
    lora->set_alpha(8);
    lora->add_target_modules("q_proj");
    lora->add_target_modules("v_proj");
    s.mutable_data()->add_train()->set_path("data/train.txt");
    s.mutable_data()->set_validation_fraction(0.1);
    s.mutable_data()->set_shuffle_seed(9);
    return t;
  }

  std::string root_;
};

TEST_F(SpecOptionsTest, MapsEveryPipelineSetting) {
  absl::StatusOr<convert::ConvertOptions> o = ConvertOptionsForTask(LolcatsTask(), root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->teacher, root_ + "/models/tiny");
  EXPECT_EQ(o->attention.recipe, model::Recipe::kLolcats);
  EXPECT_EQ(o->attention.feature_dim, 16);
  EXPECT_EQ(o->attention.window, 32);
  EXPECT_TRUE(o->attention.terrace);
  EXPECT_EQ(o->tokens, 2 * 100 * 4 * 64);  // both stages' budgets, split evenly
  EXPECT_EQ(o->data.seq_len, 64);
  EXPECT_EQ(o->batch_size, 4);
  EXPECT_EQ(o->seed, 42u);
  EXPECT_EQ(o->data.seed, 9u);
  EXPECT_DOUBLE_EQ(o->data.validation_fraction, 0.1);
  EXPECT_EQ(o->data.files, std::vector<std::string>{root_ + "/data/train.txt"});
  EXPECT_DOUBLE_EQ(o->stage1.lr, 0.05);
  EXPECT_EQ(o->stage1.schedule, convert::Schedule::kPlateau);
  EXPECT_EQ(o->stage1.eval_every, 10);
  EXPECT_EQ(o->stage1.early_stop_patience, 3);
  EXPECT_DOUBLE_EQ(o->stage1.warmup_fraction, 0.1);  // 10 of 100 steps
  EXPECT_DOUBLE_EQ(o->stage2.lr, 1e-3);
  EXPECT_EQ(o->stage2.schedule, convert::Schedule::kCosine);
  EXPECT_DOUBLE_EQ(o->mse_weight, 500);
  EXPECT_EQ(o->checkpoint_every, 7);  // the smaller of the stages' intervals
  EXPECT_EQ(o->lora.rank, 4);
  EXPECT_DOUBLE_EQ(o->lora.alpha, 8);
  EXPECT_EQ(o->lora.targets,
            (std::vector<model::LoraTarget>{model::LoraTarget::kQ, model::LoraTarget::kV}));
  EXPECT_TRUE(o->peft);  // merge_lora false: adapters also stored apart
  EXPECT_EQ(PlannedSteps(*o, 1), 100);
  EXPECT_EQ(PlannedSteps(*o, 2), 100);
  EXPECT_EQ(TokensPerStep(*o), 4 * 64);
}

TEST_F(SpecOptionsTest, GpuTasksTrainOnCudaInTheSpecsPrecision) {
  v1::Task t = LolcatsTask();  // the fixture is a CPU task (gpus 0)
  auto cpu = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->device, "cpu");
  EXPECT_FALSE(cpu->bf16);
  t.set_gpus(1);
  auto gpu = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->device, "cuda");
  EXPECT_TRUE(gpu->bf16);  // PRECISION_UNSPECIFIED: bf16 on a GPU
  t.mutable_spec()->set_precision(v1::PRECISION_FP32);
  EXPECT_FALSE(ConvertOptionsForTask(t, root_)->bf16);
  t.set_gpus(0);
  t.mutable_spec()->set_precision(v1::PRECISION_BF16);
  EXPECT_TRUE(ConvertOptionsForTask(t, root_)->bf16);
}

TEST_F(SpecOptionsTest, ALayerBlockTaskTrainsItsBlock) {
  v1::Task t = LolcatsTask();
  t.mutable_layer_block()->set_first_layer(1);
  t.mutable_layer_block()->set_num_layers(2);
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->block_first, 1);
  EXPECT_EQ(o->block_count, 2);
  EXPECT_EQ(ConvertOptionsForTask(LolcatsTask(), root_)->block_count, 0);
}

TEST_F(SpecOptionsTest, EveryTaskOfAJobMapsAlike) {
  v1::Task at = LolcatsTask();
  v1::Task ft = at;
  ft.set_kind(v1::STAGE_FINETUNE);
  ft.set_attempt(3);
  ft.set_output_path("jobs/j/t/lease-3");
  auto a = ConvertOptionsForTask(at, root_), b = ConvertOptionsForTask(ft, root_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->seed, b->seed);
  EXPECT_EQ(a->data.seq_len, b->data.seq_len);
  EXPECT_EQ(a->batch_size, b->batch_size);
  EXPECT_EQ(a->lora.rank, b->lora.rank);
}

TEST_F(SpecOptionsTest, ConstantScheduleNeverReduces) {
  v1::Task t = LolcatsTask();
  t.mutable_spec()->mutable_recipe()->mutable_finetune()->mutable_training()->set_lr_schedule(
      v1::LR_SCHEDULE_CONSTANT);
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->stage2.schedule, convert::Schedule::kPlateau);
  EXPECT_GT(o->stage2.plateau_patience, int64_t{1} << 40);
}

TEST_F(SpecOptionsTest, LinearBaselineTrainsStageTwoOnly) {
  v1::Task t = LolcatsTask();
  v1::Recipe* r = t.mutable_spec()->mutable_recipe();
  r->set_kind(v1::RECIPE_KIND_LINEAR_BASELINE);
  r->mutable_linear_baseline();
  r->mutable_attention_transfer()->mutable_training()->set_skip(true);
  r->mutable_finetune()->mutable_training()->set_sequence_length(32);
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->attention.recipe, model::Recipe::kLinear);
  EXPECT_EQ(o->tokens, 100 * 4 * 64);
  EXPECT_EQ(o->data.seq_len, 32);
  EXPECT_EQ(o->seed, 43u);
  EXPECT_EQ(PlannedSteps(*o, 1), 0);
  EXPECT_EQ(PlannedSteps(*o, 2), 200);
}

TEST_F(SpecOptionsTest, DirectorySourcesListTextFilesInNameOrder) {
  v1::Task t = LolcatsTask();
  t.mutable_spec()->mutable_data()->mutable_train(0)->set_path("data/dir");
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->data.files,
            (std::vector<std::string>{root_ + "/data/dir/a.jsonl", root_ + "/data/dir/b.txt"}));
}

TEST_F(SpecOptionsTest, SelfDistillationSizesTheSample) {
  v1::Task t = LolcatsTask();
  t.mutable_spec()->mutable_data()->clear_train();
  auto* sd = t.mutable_spec()->mutable_data()->mutable_self_distillation();
  sd->set_enabled(true);
  sd->set_num_tokens(64 * 50);
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->data.files.empty());
  EXPECT_EQ(o->data.self_distill_sequences, 50);
}

// The attention cross-entropy and each stage's weight decay reach the pipeline.
TEST_F(SpecOptionsTest, PassesCrossEntropyAndWeightDecay) {
  v1::Task t = LolcatsTask();
  auto* r = t.mutable_spec()->mutable_recipe();
  r->mutable_attention_transfer()->set_attention_xent_weight(0.5);
  r->mutable_attention_transfer()->mutable_training()->set_weight_decay(0.01);
  r->mutable_finetune()->mutable_training()->set_weight_decay(0.1);
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->xent_weight, 0.5);
  EXPECT_EQ(o->stage1.weight_decay, 0.01);
  EXPECT_EQ(o->stage2.weight_decay, 0.1);
  // Unset: off.
  auto plain = ConvertOptionsForTask(LolcatsTask(), root_);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->xent_weight, 0.0);
  EXPECT_EQ(plain->stage2.weight_decay, 0.0);
}

// spec.init_from (stored by the scheduler as an artifact path) reaches the
// pipeline as a path under the root; a reference left unresolved or a path
// that is gone is refused, naming the field.
TEST_F(SpecOptionsTest, PassesTheStudentToStartFrom) {
  ASSERT_TRUE(convert::MakeDirs(root_ + "/models/student").ok());
  v1::Task t = LolcatsTask();
  t.mutable_spec()->mutable_init_from()->set_artifact_path("models/student");
  auto o = ConvertOptionsForTask(t, root_);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->init_from, root_ + "/models/student");
  EXPECT_TRUE(ConvertOptionsForTask(LolcatsTask(), root_)->init_from.empty());

  t.mutable_spec()->mutable_init_from()->set_job_id("job-1");
  o = ConvertOptionsForTask(t, root_);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("spec.init_from"), std::string::npos) << o.status();
  t.mutable_spec()->mutable_init_from()->set_artifact_path("models/gone");
  o = ConvertOptionsForTask(t, root_);
  EXPECT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("spec.init_from.artifact_path"), std::string::npos)
      << o.status();
}

// Each refusal names the spec field.
TEST_F(SpecOptionsTest, RefusesWhatThePipelineCannotDo) {
  struct Case {
    const char* field;
    std::function<void(v1::Task&)> change;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  const std::vector<Case> cases = {
      {"target_modules[1]",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_recipe()->mutable_finetune()->mutable_lora()->set_target_modules(
             1, "gate_proj");
       }},
      {"spec.data.validation",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_data()->add_validation()->set_path("data/train.txt");
       }},
      {"self_distillation",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_data()->mutable_self_distillation()->set_enabled(true);
       }},
      {"window_factor_init",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_recipe()->mutable_lolcats()->set_window_factor_init(0.5f);
       }},
      {"attention_transfer.training.skip",
       [](v1::Task& t) {
         t.mutable_spec()
             ->mutable_recipe()
             ->mutable_attention_transfer()
             ->mutable_training()
             ->set_skip(true);
       }},
      {"spec.data.train[0].path",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_data()->mutable_train(0)->set_path("../escape.txt");
       }},
      {"spec.data.train[0].path",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_data()->mutable_train(0)->set_path("data/bad.json");
       }},
      {"spec.data.train[0].path",
       [](v1::Task& t) {
         t.mutable_spec()->mutable_data()->mutable_train(0)->set_path("data/missing.txt");
       },
       absl::StatusCode::kNotFound},
      {"teacher_path", [](v1::Task& t) { t.set_teacher_path("models/none"); },
       absl::StatusCode::kNotFound},
      {"spec.budget.gpus_per_task", [](v1::Task& t) { t.set_gpus(2); }},
      {"spec.precision", [](v1::Task& t) { t.mutable_spec()->set_precision(v1::PRECISION_FP16); }},
  };
  for (const Case& c : cases) {
    v1::Task t = LolcatsTask();
    c.change(t);
    absl::StatusOr<convert::ConvertOptions> o = ConvertOptionsForTask(t, root_);
    ASSERT_FALSE(o.ok()) << c.field;
    EXPECT_EQ(o.status().code(), c.code) << c.field << ": " << o.status();
    EXPECT_NE(o.status().message().find(c.field), std::string::npos) << o.status();
  }
}

}  // namespace
}  // namespace linearize::worker
