// The conversion pipeline end to end on the tiny llama3_scaled teacher:
// stage 1 cuts the attention MSE, stage 2 cuts perplexity, an interrupted
// run resumes to the same numbers bit for bit, the output loads and
// generates, and bad input fails with clear messages.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "common/convert/block_inputs.h"
#include "common/convert/block_merge.h"
#include "common/convert/fs_util.h"
#include "common/convert/pipeline.h"
#include "common/convert/tensor_file.h"
#include "common/model/load.h"
#include "common/model/recording_attention.h"
#include "common/model/softmax_attention.h"
#include "common/model/student_attention.h"
#include "common/runtime/generator.h"
#include "nlohmann/json.hpp"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::MakeText;
using testing::TempDir;

const std::string kTeacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled";

ConvertOptions SmallOptions(const std::string& out, model::Recipe recipe) {
  ConvertOptions o;
  o.teacher = kTeacher;
  o.attention = model::DefaultLinearAttentionConfig(recipe);
  o.attention.window = 16;
  o.attention.feature_dim = 16;
  o.data.seq_len = 64;
  o.data.validation_fraction = 0.1;
  o.batch_size = 4;
  o.out_dir = out;
  o.checkpoint_every = 0;
  o.stage1.eval_every = 20;
  o.stage2.eval_every = 20;
  return o;
}

std::string WriteTextFile(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// A LoLCATs stage-1 run of the one-layer block at `first` on the text file
// `data`, `steps` steps per stage.
ConvertOptions OneLayerBlock(const std::string& out, const std::string& data, int64_t first,
                             int64_t steps) {
  ConvertOptions o = SmallOptions(out, model::Recipe::kLolcats);
  o.data.files = {data};
  o.tokens = 2 * steps * 4 * 64;
  o.stage1.eval_every = 5;
  o.block_first = first;
  o.block_count = 1;
  return o;
}

TEST(ConvertPipeline, LolcatsTransfersFinetunesAndExportsAServableModel) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLolcats);
  o.data.files = {WriteTextFile(dir, "train.txt", MakeText(6000, 1))};
  o.tokens = 2 * 200 * 4 * 64;  // 200 steps per stage
  // The fixture teacher is random: its heads attend sharply to arbitrary
  // older tokens, which a hedgehog map only partly reproduces (measured:
  // 0.317 -> 0.099, 3.2x, flat beyond 200 steps; see the report). A wider
  // map, a higher rate and a window of half the sequence do best here.
  o.attention.window = 32;
  o.attention.feature_dim = 64;
  o.stage1.lr = 0.05;
  std::vector<ProgressEvent> events;
  auto r = Convert(o, [&](const ProgressEvent& e) {
    events.push_back(e);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf(
      "val MSE %.6g -> %.6g; ppl teacher %.3f, student after stage 1 %.3f, after stage 2 %.3f; "
      "%.1f s\n",
      r->initial_val_mse, r->final_val_mse, r->teacher_val_ppl, r->student_val_ppl_before_finetune,
      r->student_val_ppl, r->seconds);
  EXPECT_LE(r->final_val_mse * 2.5, r->initial_val_mse);
  EXPECT_LT(r->student_val_ppl, r->student_val_ppl_before_finetune);
  EXPECT_EQ(r->tokens_seen, o.tokens);
  // Progress events name the stages and count up.
  bool saw_transfer = false, saw_finetune = false;
  for (const ProgressEvent& e : events) {
    saw_transfer |= e.stage == "attention_transfer" && e.step == e.total && e.total == 200;
    saw_finetune |= e.stage == "finetune" && e.step >= 1 && e.tokens_per_second > 0;
  }
  EXPECT_TRUE(saw_transfer);
  EXPECT_TRUE(saw_finetune);

  // The directory loads as a converted model and generates from its recurrent state.
  auto loaded = model::LoadModel(o.out_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->linear_attention.has_value());
  EXPECT_EQ(loaded->linear_attention->recipe, model::Recipe::kLolcats);
  EXPECT_EQ(loaded->model->attention(0).name(), "lolcats");
  ASSERT_NE(loaded->tokenizer, nullptr);
  runtime::Generator gen(*loaded->model, loaded->tokenizer.get());
  runtime::GenerateOptions g;
  g.max_new_tokens = 12;
  const std::vector<int32_t> prompt = loaded->tokenizer->Encode("the cat sat on");
  auto out = gen.Generate(prompt, g);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GE(out->token_ids.size(), 1u);
  EXPECT_EQ(out->usage.prompt_tokens, static_cast<int64_t>(prompt.size()));
  // Greedy decoding through the recurrent state picks the parallel form's argmax.
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), out->token_ids.begin(), out->token_ids.end());
  at::NoGradGuard no_grad;
  auto logits = loaded->model->Forward(
      at::tensor(std::vector<int64_t>(all.begin(), all.end()), at::kLong).unsqueeze(0));
  ASSERT_TRUE(logits.ok());
  const at::Tensor argmax = logits->argmax(-1)[0];
  for (size_t i = 0; i < out->token_ids.size(); ++i) {
    EXPECT_EQ(argmax[static_cast<int64_t>(prompt.size() + i - 1)].item<int64_t>(),
              out->token_ids[i]);
  }
  std::ifstream card(o.out_dir + "/README.md");
  std::string text((std::istreambuf_iterator<char>(card)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("lolcats"), std::string::npos);
  EXPECT_NE(text.find("student perplexity after stage 2"), std::string::npos);
}

// On text the teacher generates itself (self-distillation, no data files),
// its attention is far more regular, and stage 1 cuts the MSE well past 10x.
TEST(ConvertPipeline, AttentionTransferOnSelfDistilledDataCutsMseTenfold) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLolcats);
  o.attention.window = 32;
  o.attention.feature_dim = 64;
  o.stage1.lr = 0.05;
  o.data.self_distill_sequences = 48;
  o.tokens = 2 * 100 * 4 * 64;  // 100 steps per stage
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf(
      "self-distilled: val MSE %.6g -> %.6g; ppl teacher %.4f, student %.4f -> %.4f; %.1f s\n",
      r->initial_val_mse, r->final_val_mse, r->teacher_val_ppl, r->student_val_ppl_before_finetune,
      r->student_val_ppl, r->seconds);
  EXPECT_LE(r->final_val_mse * 10, r->initial_val_mse);
}

TEST(ConvertPipeline, InterruptedRunResumesBitExactly) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 2));
  auto options = [&](const std::string& out) {
    ConvertOptions o = SmallOptions(out, model::Recipe::kLizard);
    o.data.files = {data};
    o.tokens = 2 * 24 * 4 * 64;  // 24 steps per stage
    o.stage1.eval_every = 5;
    o.stage2.eval_every = 5;
    o.grad_accum = 2;
    o.tokens *= 2;
    return o;
  };
  ConvertOptions whole = options(dir.path() + "/whole");
  auto a = Convert(whole);
  ASSERT_TRUE(a.ok()) << a.status();

  ConvertOptions part = options(dir.path() + "/part");
  part.checkpoint_every = 7;
  // Stop once inside each stage, at steps that are not checkpoint steps.
  for (auto [stage, step] :
       {std::pair<std::string, int64_t>{"attention_transfer", 11}, {"finetune", 9}}) {
    auto stopped = Convert(
        part, [&](const ProgressEvent& e) { return !(e.stage == stage && e.step == step); });
    ASSERT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
    EXPECT_TRUE(PathExists(part.out_dir + "/checkpoint/state.json"));
    part.resume = true;
  }
  auto b = Convert(part);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->resumed);
  EXPECT_EQ(a->last_loss, b->last_loss);
  EXPECT_EQ(a->final_val_mse, b->final_val_mse);
  EXPECT_EQ(a->student_val_ppl, b->student_val_ppl);
  EXPECT_EQ(a->tokens_seen, b->tokens_seen);
  EXPECT_LT(a->final_val_mse, a->initial_val_mse);
}

// A run from a converted student (init_from) starts where that student
// ended: with learning rates too small to move anything, its attention MSE
// before training and its final perplexity are the student's own (exactly
// from the float32 output with its adapter/, to bf16 rounding from its
// delta/). Settings that differ are refused, naming the field.
TEST(ConvertPipeline, InitFromAStudentStartsWhereItEnded) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 3));
  auto options = [&](const std::string& out) {
    ConvertOptions o = SmallOptions(out, model::Recipe::kLizard);
    o.data.files = {data};
    o.tokens = 2 * 30 * 4 * 64;  // 30 steps per stage
    o.stage1.lr = 0.05;
    return o;
  };
  ConvertOptions first = options(dir.path() + "/first");
  first.peft = true;
  auto a = Convert(first);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_LT(a->final_val_mse * 1.5, a->initial_val_mse);

  for (const std::string from : {first.out_dir, first.out_dir + "/delta"}) {
    SCOPED_TRACE(from);
    const bool exact = from == first.out_dir;
    ConvertOptions next = options(dir.path() + (exact ? "/next" : "/next_delta"));
    next.init_from = from;
    next.stage1.lr = next.stage2.lr = 1e-12;
    auto b = Convert(next);
    ASSERT_TRUE(b.ok()) << b.status();
    const double tol = exact ? 1e-9 : 2e-2;
    EXPECT_NEAR(b->initial_val_mse, a->final_val_mse, tol * a->final_val_mse);
    EXPECT_NEAR(b->final_val_mse, a->final_val_mse, tol * a->final_val_mse);
    EXPECT_NEAR(b->student_val_ppl, a->student_val_ppl, tol * a->student_val_ppl);
    std::ifstream card(next.out_dir + "/README.md");
    const std::string text((std::istreambuf_iterator<char>(card)),
                           std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("started from the student in `" + from + "`"), std::string::npos);
  }

  auto refused = [&](std::function<void(ConvertOptions&)> change) {
    ConvertOptions o = options(dir.path() + "/refused");
    o.init_from = first.out_dir;
    change(o);
    auto r = Convert(o);
    EXPECT_FALSE(PathExists(o.out_dir + "/checkpoint"));
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_NE(refused([](ConvertOptions& o) {
              o.attention.window = 32;
            }).find("its linear_attention.window is 16, this run's is 32"),
            std::string::npos);
  EXPECT_NE(refused([](ConvertOptions& o) {
              o.attention.recipe = model::Recipe::kLolcats;
            }).find("its linear_attention.recipe is \"lizard\", this run's is \"lolcats\""),
            std::string::npos);
  const std::string lora = refused([](ConvertOptions& o) { o.lora.rank = 4; });
  EXPECT_NE(lora.find("its LoRA (q_proj rank 8"), std::string::npos) << lora;
  EXPECT_NE(lora.find("this run's (q_proj rank 4"), std::string::npos) << lora;
  EXPECT_NE(
      refused([](ConvertOptions& o) { o.init_from = kTeacher; }).find("not a converted model"),
      std::string::npos);
  // A delta names its teacher file by SHA-256: another teacher file is
  // refused (the GGUF copy of the fixture, while this delta names zeros).
  const std::string other = dir.path() + "/other_teacher_delta";
  std::filesystem::copy(first.out_dir + "/delta", other);
  {
    std::ifstream in(other + "/config.json");
    nlohmann::json j = nlohmann::json::parse(in);
    j["linearize_delta"]["base_sha256"] = "sha256:" + std::string(64, '0');
    std::ofstream(other + "/config.json") << j.dump(2);
  }
  const std::string gguf = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled.gguf";
  const std::string wrong = refused([&](ConvertOptions& o) {
    o.teacher = gguf;
    o.init_from = other;
  });
  EXPECT_NE(wrong.find("init_from " + other + " was made from a base with sha256:000"), std::string::npos) << wrong;
}

// The attention cross-entropy (xent_weight) trains the students' weights
// toward the teacher's softmax weights: a run led by it ends with a lower
// cross-entropy on fresh text (the teacher's records against the exported
// students' explicit matrices) than the fresh student and than a run on the
// MSE alone, and its MSE still falls.
TEST(ConvertPipeline, AttentionCrossEntropyPullsTheWeightsTowardTheTeachers) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 4));
  auto options = [&](const std::string& out) {
    ConvertOptions o = SmallOptions(out, model::Recipe::kLolcats);
    o.data.files = {data};
    o.tokens = 2 * 40 * 4 * 64;  // 40 steps per stage
    o.stage1.lr = 0.05;
    return o;
  };
  const ConvertOptions mse_only = options(dir.path() + "/mse");
  auto a = Convert(mse_only);
  ASSERT_TRUE(a.ok()) << a.status();
  ConvertOptions with_xent = options(dir.path() + "/xent");
  with_xent.mse_weight = 1;
  with_xent.xent_weight = 10;
  auto b = Convert(with_xent);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_LT(b->final_val_mse, b->initial_val_mse);

  auto teacher = model::LoadModel(kTeacher);
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  const io::ModelConfig& config = teacher->config;
  std::vector<model::LayerRecord> records(static_cast<size_t>(config.num_hidden_layers));
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    teacher->model->SetAttention(
        l, model::RecordingAttention::Softmax(config, &records[static_cast<size_t>(l)]));
  }
  at::NoGradGuard no_grad;
  const std::vector<int32_t> text = teacher->tokenizer->Encode(MakeText(200, 9));
  ASSERT_GE(text.size(), 64u);
  const at::Tensor ids =
      at::tensor(std::vector<int64_t>(text.begin(), text.begin() + 64), at::kLong).unsqueeze(0);
  ASSERT_TRUE(teacher->model->Forward(ids).ok());
  // Sum over layers of the mean over queries of -sum_j p_ij log q_ij.
  const auto xent = [&](const std::function<const model::StudentAttention&(int64_t)>& layer) {
    double sum = 0;
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      const model::LayerRecord& r = records[static_cast<size_t>(l)];
      at::Tensor w = layer(l).AttentionWeights(r.in).to(at::kFloat);
      w = w / w.sum(-1, /*keepdim=*/true);
      const at::Tensor p = model::SoftmaxAttentionWeights(r.in.q, r.in.k);
      sum -= (p * at::log(w.clamp_min(1e-30))).sum(-1).mean().item<double>();
    }
    return sum;
  };
  const auto exported = [&](const std::string& out) {
    auto s = model::LoadModel(out);
    EXPECT_TRUE(s.ok()) << s.status();
    return xent([&](int64_t l) -> const model::StudentAttention& {
      return dynamic_cast<const model::StudentAttention&>(s->model->attention(l));
    });
  };
  std::vector<std::unique_ptr<model::StudentAttention>> fresh;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    auto f = model::MakeStudentAttention(
        mse_only.attention, config,
        model::InitStudentTensors(mse_only.attention, config, l, mse_only.seed));
    ASSERT_TRUE(f.ok()) << f.status();
    fresh.push_back(*std::move(f));
  }
  const double x0 = xent([&](int64_t l) -> const model::StudentAttention& { return *fresh[l]; });
  const double x_mse = exported(mse_only.out_dir), x_xent = exported(with_xent.out_dir);
  std::printf("attention cross-entropy: fresh %.4f, MSE run %.4f, xent run %.4f\n", x0, x_mse,
              x_xent);
  EXPECT_LT(x_xent, x0);
  EXPECT_LT(x_xent, x_mse);
}

// Stage 1 per layer block, merged, then stage 2: the same student as one
// whole run. Per-layer transfer is independent, and with a cosine schedule
// and no early stopping nothing looks at the summed loss, so bit for bit.
TEST(ConvertPipeline, BlockwiseTransferMergesIntoTheWholeRunsStudent) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 4));
  auto options = [&](const std::string& out) {
    ConvertOptions o = SmallOptions(dir.path() + "/" + out, model::Recipe::kLolcats);
    o.data.files = {data};
    o.tokens = 2 * 20 * 4 * 64;
    o.stage1.schedule = Schedule::kCosine;
    o.stage1.early_stop_patience = 0;
    o.stage1.eval_every = 7;
    return o;
  };
  const ConvertOptions whole_options = options("whole");
  auto whole = Convert(whole_options);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto loaded = model::LoadModel(kTeacher);
  ASSERT_TRUE(loaded.ok());
  const int64_t layers = loaded->config.num_hidden_layers;
  ASSERT_GE(layers, 2);
  std::vector<std::string> blocks;
  double block_mse = 0;
  for (int64_t first = 0; first < layers; ++first) {
    ConvertOptions b = options("block" + std::to_string(first));
    b.block_first = first;
    b.block_count = 1;
    auto r = Convert(b);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(PathExists(b.out_dir + "/model.safetensors")) << "a block run stops after stage 1";
    block_mse += r->final_val_mse;
    blocks.push_back(b.out_dir + "/checkpoint");
  }
  // The whole run sums the layers in float32, the test in double.
  EXPECT_NEAR(block_mse, whole->final_val_mse, 1e-6 * whole->final_val_mse);
  ConvertOptions joined = options("joined");
  ASSERT_TRUE(MergeStage1Checkpoints(blocks, joined.out_dir + "/checkpoint").ok());
  joined.resume = true;
  auto r = Convert(joined);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->final_val_mse, whole->final_val_mse);
  EXPECT_EQ(r->student_val_ppl, whole->student_val_ppl);
  EXPECT_EQ(r->last_loss, whole->last_loss);

  // Overlapping or missing blocks fail with the reason.
  absl::Status twice = MergeStage1Checkpoints({blocks[0], blocks[0]}, dir.path() + "/x");
  EXPECT_EQ(twice.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice.message().find("overlap"), std::string::npos) << twice;
  ConvertOptions partial = options("partial");
  ASSERT_TRUE(MergeStage1Checkpoints({blocks[0]}, partial.out_dir + "/checkpoint").ok());
  partial.resume = true;
  auto missing = Convert(partial);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing tensor student/1."), std::string::npos)
      << missing.status();
  ConvertOptions outside = options("outside");
  outside.block_first = layers;
  outside.block_count = 1;
  EXPECT_EQ(Convert(outside).status().code(), absl::StatusCode::kInvalidArgument);
}

// Blocks one after another: block 0 writes the teacher's stream leaving it,
// block 1 trains from that file, running only its own teacher layer each
// step, and ends where block 1 computing its inputs itself ends.
TEST(ConvertPipeline, BlockFromCachedInputsEqualsBlockFromTheTeacher) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 5));
  auto options = [&](const std::string& out, int64_t first) {
    return OneLayerBlock(dir.path() + "/" + out, data, first, 15);
  };
  const std::string stream = dir.path() + "/stream_1.safetensors";
  ConvertOptions first = options("block0", 0);
  first.write_block_outputs = stream;
  auto r0 = Convert(first);
  ASSERT_TRUE(r0.ok()) << r0.status();
  ASSERT_TRUE(PathExists(stream));

  auto plain = Convert(options("block1", 1));
  ASSERT_TRUE(plain.ok()) << plain.status();
  ConvertOptions cached_options = options("block1_cached", 1);
  cached_options.block_inputs = stream;
  auto cached = Convert(cached_options);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->initial_val_mse, plain->initial_val_mse);
  EXPECT_EQ(cached->final_val_mse, plain->final_val_mse);
  EXPECT_EQ(cached->last_loss, plain->last_loss);
  EXPECT_LT(cached->final_val_mse, cached->initial_val_mse);

  // Inputs of another layer, or of other data, are refused by name.
  ConvertOptions wrong_layer = options("wrong_layer", 0);
  wrong_layer.block_inputs = stream;
  absl::Status s = Convert(wrong_layer).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("enter layer 1 but the block starts at layer 0"), std::string::npos)
      << s;
  ConvertOptions other_data = options("other_data", 1);
  other_data.data.files = {WriteTextFile(dir, "other.txt", MakeText(3000, 6))};
  other_data.block_inputs = stream;
  s = Convert(other_data).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("other token data"), std::string::npos) << s;
  ConvertOptions no_block = options("no_block", 0);
  no_block.block_count = 0;
  no_block.block_inputs = stream;
  EXPECT_EQ(Convert(no_block).status().code(), absl::StatusCode::kInvalidArgument);
}

// A block run from cached inputs loads only its block of the teacher (no
// other layer, no embeddings or head) and gives what the same run with the
// whole teacher gives: losses, teacher perplexity, checkpoint and the stream
// it writes. Inputs without the teacher's perplexity (or data sampled from
// the teacher) need the whole teacher, which is then loaded as before.
TEST(ConvertPipeline, BlockFromCachedInputsLoadsOnlyItsLayers) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 7));
  auto options = [&](const std::string& out, int64_t first) {
    return OneLayerBlock(dir.path() + "/" + out, data, first, 12);
  };
  auto whole = model::LoadModel(kTeacher);
  ASSERT_TRUE(whole.ok()) << whole.status();
  model::LoadOptions block_load;
  block_load.layers = model::LayerRange{1, 1};
  auto block = model::LoadModel(kTeacher, block_load);
  ASSERT_TRUE(block.ok()) << block.status();
  const int64_t all_params = model::ParameterCount(whole->config, whole->model->weights());
  const int64_t block_params = model::ParameterCount(block->config, block->model->weights());
  ASSERT_LT(block_params, all_params / 2);

  const std::string stream = dir.path() + "/stream_1.safetensors";
  ConvertOptions first = options("block0", 0);
  first.write_block_outputs = stream;
  auto r0 = Convert(first);
  ASSERT_TRUE(r0.ok()) << r0.status();
  EXPECT_EQ(r0->teacher_parameters, all_params);
  EXPECT_EQ(StoredTeacherPerplexity(stream), r0->teacher_val_ppl);
  // The same inputs without the recorded perplexity: the whole teacher.
  const std::string bare = dir.path() + "/stream_1_bare.safetensors";
  {
    std::map<std::string, std::string> meta;
    auto tensors = ReadTensorFile(stream, &meta);
    ASSERT_TRUE(tensors.ok()) << tensors.status();
    ASSERT_EQ(meta.erase("teacher_val_ppl"), 1u);
    NamedTensorList list(tensors->begin(), tensors->end());
    ASSERT_TRUE(WriteTensorFile(bare, list, meta).ok());
  }

  ConvertOptions only_options = options("block1_only", 1);
  only_options.block_inputs = stream;
  only_options.write_block_outputs = dir.path() + "/stream_2_only.safetensors";
  auto only = Convert(only_options);
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_EQ(only->teacher_parameters, block_params);
  ConvertOptions full_options = options("block1_full", 1);
  full_options.block_inputs = bare;
  full_options.write_block_outputs = dir.path() + "/stream_2_full.safetensors";
  auto full = Convert(full_options);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->teacher_parameters, all_params);

  EXPECT_EQ(only->initial_val_mse, full->initial_val_mse);
  EXPECT_EQ(only->final_val_mse, full->final_val_mse);
  EXPECT_EQ(only->last_loss, full->last_loss);
  EXPECT_EQ(only->stage1_steps, full->stage1_steps);
  EXPECT_EQ(only->teacher_val_ppl, full->teacher_val_ppl);
  EXPECT_LT(only->final_val_mse, only->initial_val_mse);
  // Checkpoints: the same tensors and state (but the time taken).
  auto same_files = [](const std::string& a, const std::string& b) {
    std::map<std::string, std::string> meta_a, meta_b;
    auto ta = ReadTensorFile(a, &meta_a);
    auto tb = ReadTensorFile(b, &meta_b);
    ASSERT_TRUE(ta.ok() && tb.ok()) << a << ", " << b;
    EXPECT_EQ(meta_a, meta_b);
    ASSERT_EQ(ta->size(), tb->size());
    for (const auto& [name, t] : *ta) {
      auto it = tb->find(name);
      ASSERT_NE(it, tb->end()) << name;
      EXPECT_TRUE(at::equal(t, it->second)) << name;
    }
  };
  same_files(only_options.out_dir + "/checkpoint/tensors.safetensors",
             full_options.out_dir + "/checkpoint/tensors.safetensors");
  auto state = [](const std::string& out) {
    nlohmann::json j = nlohmann::json::parse(testing::Slurp(out + "/checkpoint/state.json"));
    j.erase("seconds");
    return j;
  };
  EXPECT_EQ(state(only_options.out_dir), state(full_options.out_dir));
  same_files(only_options.write_block_outputs, full_options.write_block_outputs);
  EXPECT_EQ(StoredTeacherPerplexity(only_options.write_block_outputs), r0->teacher_val_ppl);

  // Resumed, a block-only run takes the same steps.
  ConvertOptions resumed_options = options("block1_resumed", 1);
  resumed_options.block_inputs = stream;
  auto stopped = Convert(resumed_options, [](const ProgressEvent& e) {
    return !(e.stage == "attention_transfer" && e.step == 4);
  });
  ASSERT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  resumed_options.resume = true;
  auto resumed = Convert(resumed_options);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->teacher_parameters, block_params);
  EXPECT_EQ(resumed->final_val_mse, full->final_val_mse);
  EXPECT_EQ(resumed->last_loss, full->last_loss);
  EXPECT_EQ(resumed->teacher_val_ppl, full->teacher_val_ppl);

  // Data sampled from the teacher need the whole of it.
  auto sampled = [&](const std::string& out, int64_t first) {
    ConvertOptions o = options(out, first);
    o.data.files.clear();
    o.data.self_distill_sequences = 6;
    o.tokens = 2 * 2 * 4 * 64;
    return o;
  };
  ConvertOptions sampled0 = sampled("sampled0", 0);
  sampled0.write_block_outputs = dir.path() + "/sampled_1.safetensors";
  ASSERT_TRUE(Convert(sampled0).ok());
  ConvertOptions sampled1 = sampled("sampled1", 1);
  sampled1.block_inputs = sampled0.write_block_outputs;
  auto r = Convert(sampled1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->teacher_parameters, all_params);
}

// Activation checkpointing changes memory, not results: the same losses and
// student as the plain run, up to the order of gradient sums.
TEST(ConvertPipeline, ActivationCheckpointingGivesTheSameStudent) {
  TempDir dir;
  const std::string data = WriteTextFile(dir, "train.txt", MakeText(3000, 8));
  auto options = [&](const std::string& out, bool checkpointing) {
    ConvertOptions o = SmallOptions(dir.path() + "/" + out, model::Recipe::kLizard);
    o.data.files = {data};
    o.tokens = 2 * 12 * 4 * 64;
    o.stage2.lr = 1e-2;  // large enough that the LoRA moves
    o.activation_checkpointing = checkpointing;
    return o;
  };
  auto plain = Convert(options("plain", false));
  auto recomputed = Convert(options("recomputed", true));
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(recomputed.ok()) << recomputed.status();
  std::printf("stage 2 last loss %.9g vs %.9g; ppl %.9g vs %.9g\n", plain->last_loss,
              recomputed->last_loss, plain->student_val_ppl, recomputed->student_val_ppl);
  EXPECT_LT(plain->student_val_ppl, plain->student_val_ppl_before_finetune);
  EXPECT_NEAR(recomputed->last_loss, plain->last_loss, 1e-5 * std::abs(plain->last_loss));
  EXPECT_NEAR(std::log(recomputed->student_val_ppl), std::log(plain->student_val_ppl), 1e-5);
  ConvertOptions bad = options("bad", true);
  bad.lora.dropout = 0.1;
  auto r = Convert(bad);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("LoRA dropout"), std::string::npos) << r.status();
}

TEST(ConvertPipeline, SelfDistillationWithoutDataAndTheLinearBaseline) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLinear);
  o.data.self_distill_sequences = 12;
  o.tokens = 30 * 4 * 64;
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stage1_steps, 0);
  std::printf("self-distilled data, linear baseline: ppl teacher %.3f, student %.3f -> %.3f\n",
              r->teacher_val_ppl, r->student_val_ppl_before_finetune, r->student_val_ppl);
  EXPECT_LT(r->student_val_ppl, r->student_val_ppl_before_finetune);
  auto loaded = model::LoadModel(o.out_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model->attention(1).name(), "linear");
}

// bf16 autocast (the GPU setting) on the CPU: the teacher runs in bfloat16,
// the student tensors and LoRA train in float32, both stages still learn, and
// the export is a bfloat16 model that loads.
TEST(ConvertPipeline, Bfloat16AutocastTrainsAndExportsABfloat16Model) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLolcats);
  o.data.files = {WriteTextFile(dir, "train.txt", MakeText(3000, 3))};
  o.attention.window = 32;
  o.attention.feature_dim = 64;
  o.stage1.lr = 0.05;
  o.tokens = 2 * 60 * 4 * 64;  // 60 steps per stage
  o.bf16 = true;
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf("bf16: val MSE %.6g -> %.6g; ppl teacher %.3f, student %.3f -> %.3f\n",
              r->initial_val_mse, r->final_val_mse, r->teacher_val_ppl,
              r->student_val_ppl_before_finetune, r->student_val_ppl);
  EXPECT_LE(r->final_val_mse * 2, r->initial_val_mse);
  EXPECT_LT(r->student_val_ppl, r->student_val_ppl_before_finetune);
  EXPECT_NE(testing::Slurp(o.out_dir + "/config.json").find("\"torch_dtype\": \"bfloat16\""),
            std::string::npos);
  auto loaded = model::LoadModel(o.out_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model->attention(0).name(), "lolcats");
}

TEST(ConvertPipeline, TrainingDeviceMustExist) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLolcats);
  o.tokens = 1000;
  o.device = "tpu";
  auto r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("device \"tpu\""), std::string::npos) << r.status();
  o.device = "cuda:99";
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("CUDA device"), std::string::npos) << r.status();
  EXPECT_FALSE(PathExists(o.out_dir));
}

TEST(ConvertPipeline, BadInputFailsClearlyAndKeepsTheCheckpoint) {
  TempDir dir;
  ConvertOptions o = SmallOptions(dir.path() + "/out", model::Recipe::kLolcats);
  o.tokens = 0;
  auto r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("tokens"), std::string::npos);
  o.tokens = -5;
  EXPECT_EQ(Convert(o).status().code(), absl::StatusCode::kInvalidArgument);

  o.tokens = 4 * 4 * 64;
  o.xent_weight = -1;
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("xent_weight"), std::string::npos) << r.status();
  o.xent_weight = 0;
  o.data.seq_len = 16;  // the window is 16 tokens: nothing would be learned
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("fits in the softmax window"), std::string::npos)
      << r.status();
  o.data.seq_len = 64;
  o.data.files = {WriteTextFile(dir, "empty.txt", "")};
  r = Convert(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no text"), std::string::npos) << r.status();

  o.data.files = {WriteTextFile(dir, "short.txt", "the cat sat on the mat")};
  r = Convert(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("fewer than two sequences"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());

  o.data.files = {WriteTextFile(dir, "bad.jsonl", "{\"text\": \"ok\"}\n[1, 2]\n")};
  r = Convert(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.jsonl:2"), std::string::npos) << r.status();

  o.data.files = {dir.path() + "/missing.txt"};
  EXPECT_FALSE(Convert(o).ok());

  // An architecture the model code does not implement.
  const std::string gpt2 = dir.path() + "/gpt2";
  ASSERT_TRUE(MakeDirs(gpt2).ok());
  std::ofstream(gpt2 + "/config.json") << R"({"model_type": "gpt2", "vocab_size": 10})";
  ConvertOptions g = SmallOptions(dir.path() + "/out2", model::Recipe::kLolcats);
  g.teacher = gpt2;
  g.tokens = 1000;
  r = Convert(g);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("llama"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());

  // A teacher that is not a model names the file.
  ConvertOptions gg = SmallOptions(dir.path() + "/out3", model::Recipe::kLolcats);
  gg.teacher = WriteTextFile(dir, "notes.gguf", "not a GGUF file");
  gg.tokens = 1000;
  r = Convert(gg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("notes.gguf"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());

  // A good run leaves a checkpoint; a later bad run does not touch it.
  o.data.files = {WriteTextFile(dir, "train.txt", MakeText(1500, 3))};
  o.tokens = 2 * 3 * 4 * 64;
  ASSERT_TRUE(Convert(o).ok());
  auto before = ReadFile(o.out_dir + "/checkpoint/state.json");
  ASSERT_TRUE(before.ok());
  r = Convert(o);  // no --resume over an existing checkpoint
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("resume"), std::string::npos);
  o.resume = true;
  o.data.seq_len = 32;  // other options than the checkpoint's
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_EQ(*ReadFile(o.out_dir + "/checkpoint/state.json"), *before);
  EXPECT_TRUE(model::LoadModel(o.out_dir).ok());
}

}  // namespace
}  // namespace linearize::convert
