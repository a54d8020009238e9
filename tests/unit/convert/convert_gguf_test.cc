// Converting a GGUF teacher (the tiny llama3_scaled.gguf fixture: float32,
// Q/K rows permuted as llama.cpp stores them, the llama3 RoPE schedule as
// rope_freqs.weight, tied embeddings) with a tiny token budget: the output
// is a self-contained Hugging Face directory that our loader serves with
// exactly the final student's logits, that transformers loads (same logits
// from the exported weights with softmax attention, same token ids, config
// agreeing with transformers' own reading of the GGUF), and whose PEFT
// adapter peft loads and merges into the exported projections.
// Bad teachers and outputs fail before any training, naming the culprit.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <set>

#include "common/convert/export.h"
#include "common/convert/fs_util.h"
#include "common/convert/pipeline.h"
#include "common/convert/teacher.h"
#include "common/convert/tensor_file.h"
#include "common/io/safetensors.h"
#include "common/model/load.h"
#include "common/runtime/generator.h"
#include "nlohmann/json.hpp"
#include "tests/unit/convert/test_util.h"

namespace linearize::convert {
namespace {

using testing::RunHfCheck;
using testing::Slurp;
using testing::ListDir;
using testing::TempDir;
using testing::VenvPython;
using testing::WriteText;

const std::string kFixtures = LINEARIZE_FIXTURES_DIR;
const std::string kGguf = kFixtures + "/models/llama3_scaled.gguf";

std::string MakeText(int words, uint32_t seed) {
  static const char* kWords[] = {"the", "cat", "sat",   "on",  "a",   "mat",  "and",  "dog",
                                 "ran", "to",  "house", "big", "red", "blue", "tree", "sun"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < words; ++i) {
    s += kWords[rng() % 16];
    s += (i % 12 == 11) ? ".\n" : " ";
  }
  return s;
}

ConvertOptions TinyOptions(const TempDir& dir) {
  ConvertOptions o;
  o.teacher = kGguf;
  o.attention = model::DefaultLinearAttentionConfig(model::Recipe::kLolcats);
  o.attention.window = 8;
  o.attention.feature_dim = 8;
  o.data.seq_len = 32;
  o.data.validation_fraction = 0.2;
  const std::string text = dir.path() + "/train.txt";
  WriteText(text, MakeText(1500, 7));
  o.data.files = {text};
  o.batch_size = 2;
  o.tokens = 2 * 6 * 2 * 32;  // 6 steps per stage
  o.stage1.eval_every = 3;
  o.stage2.eval_every = 3;
  o.stage2.lr = 1e-2;  // large enough that the LoRA visibly moves the weights
  o.checkpoint_every = 0;
  o.out_dir = dir.path() + "/out";
  return o;
}

// The pipeline's validation perplexity, computed the same way.
double Perplexity(const model::LlamaModel& m, const at::Tensor& validation, int64_t batch) {
  at::NoGradGuard no_grad;
  double nll = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < validation.size(0); i += batch) {
    const int64_t b = std::min(batch, validation.size(0) - i);
    const at::Tensor ids = validation.narrow(0, i, b);
    auto logits = m.Forward(ids);
    EXPECT_TRUE(logits.ok());
    const int64_t t = ids.size(1);
    nll += at::cross_entropy_loss(logits->narrow(1, 0, t - 1).reshape({-1, logits->size(2)}),
                                  ids.narrow(1, 1, t - 1).reshape({-1}), {}, at::Reduction::Sum)
               .item<double>();
    count += b * (t - 1);
  }
  return std::exp(nll / static_cast<double>(count));
}

TEST(ConvertGguf, TinyGgufTeacherBecomesAServableHuggingFaceDirectory) {
  TempDir dir;
  ConvertOptions o = TinyOptions(dir);
  o.peft = true;
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf("tiny GGUF: val MSE %.5g -> %.5g; ppl teacher %.3f, student %.3f -> %.3f; %.1f s\n",
              r->initial_val_mse, r->final_val_mse, r->teacher_val_ppl,
              r->student_val_ppl_before_finetune, r->student_val_ppl, r->seconds);

  const std::vector<std::string> files = ListDir(o.out_dir);
  for (const char* f : {"README.md", "adapter", "checkpoint", "config.json", "delta",
                        "generation_config.json", "model.safetensors", "special_tokens_map.json",
                        "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_NE(std::find(files.begin(), files.end(), f), files.end()) << f;
  }
  EXPECT_EQ(files.size(), 10u) << "no leftovers (staging, temporaries)";

  // config.json: the GGUF's Hugging Face config with the new section.
  const nlohmann::json config = nlohmann::json::parse(Slurp(o.out_dir + "/config.json"));
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(config["rope_scaling"]["original_max_position_embeddings"], 64);
  EXPECT_EQ(config["tie_word_embeddings"], true);
  EXPECT_EQ(config["torch_dtype"], "float32");
  EXPECT_EQ(config["linear_attention"]["recipe"], "lolcats");
  // No lm_head (tied), no rope_freqs: only Hugging Face names.
  auto st = io::SafetensorsFile::Open(o.out_dir + "/model.safetensors");
  ASSERT_TRUE(st.ok()) << st.status();
  for (const io::TensorView& v : (*st)->tensors()) {
    EXPECT_TRUE(v.name.starts_with("model.")) << v.name;
    EXPECT_EQ(v.dtype, io::DType::kF32) << v.name;
  }

  // Our loader serves it, with exactly the final student's perplexity.
  auto loaded = model::LoadModel(o.out_dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->linear_attention.has_value());
  EXPECT_EQ(loaded->model->attention(0).name(), "lolcats");
  EXPECT_EQ(loaded->config.rope_scaling.type, "llama3");
  auto ckpt = ReadTensorFile(o.out_dir + "/checkpoint/tensors.safetensors");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const at::Tensor validation = ckpt->at("data/validation");
  EXPECT_EQ(Perplexity(*loaded->model, validation, o.batch_size), r->student_val_ppl);

  // The teacher's weights are there in Hugging Face order: the first layer's
  // MLP (not adapted) equals the GGUF teacher's, dequantized and unpermuted.
  auto teacher = model::LoadModel(kGguf);
  ASSERT_TRUE(teacher.ok());
  EXPECT_TRUE(at::equal(loaded->model->weights().layers[0].up_proj,
                        teacher->model->weights().layers[0].up_proj));
  EXPECT_TRUE(at::equal(loaded->model->weights().embed, teacher->model->weights().embed));
  // q_proj moved by the merged LoRA, but stays close to the unpermuted teacher's.
  const at::Tensor dq =
      loaded->model->weights().layers[0].q_proj - teacher->model->weights().layers[0].q_proj;
  EXPECT_GT(dq.abs().max().item<double>(), 0);
  EXPECT_LT(dq.abs().max().item<double>(), 0.5);

  // Tokenizer and chat template: the same as the GGUF's.
  ASSERT_NE(loaded->tokenizer, nullptr);
  EXPECT_EQ(loaded->chat_template, teacher->chat_template);
  EXPECT_EQ(loaded->chat_format, teacher->chat_format);
  nlohmann::json cases = nlohmann::json::array();
  for (const std::string& text :
       {std::string("the cat sat on the mat."), std::string("Hello, World! 12345"),
        std::string("  spaces\n\nand lines  "), MakeText(40, 3)}) {
    const std::vector<int32_t> ids = teacher->tokenizer->Encode(text);
    const std::vector<int32_t> with = teacher->tokenizer->Encode(text, true);
    EXPECT_EQ(loaded->tokenizer->Encode(text), ids) << text;
    EXPECT_EQ(loaded->tokenizer->Encode(text, true), with) << text;
    cases.push_back({{"text", text}, {"ids", ids}, {"ids_with_special", with}});
  }
  EXPECT_EQ(model::StopTokenIds(*loaded), model::StopTokenIds(*teacher));

  // It generates: greedy decoding through the recurrent state.
  runtime::Generator gen(*loaded->model, loaded->tokenizer.get());
  runtime::GenerateOptions g;
  g.max_new_tokens = 8;
  auto out = gen.Generate(loaded->tokenizer->Encode("the cat sat on"), g);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GE(out->token_ids.size(), 1u);

  // Model card.
  const std::string card = Slurp(o.out_dir + "/README.md");
  for (const std::string& want :
       {std::string("lolcats"), kGguf, std::string("GGUF"), std::string("token budget: 768"),
        std::string("teacher perplexity"), std::string("adapter_model.safetensors")}) {
    EXPECT_NE(card.find(want), std::string::npos) << want << "\n" << card;
  }

  // PEFT files (in adapter/: transformers would apply an adapter found
  // beside the merged weights a second time): names and shapes as peft
  // saves them.
  const nlohmann::json adapter =
      nlohmann::json::parse(Slurp(o.out_dir + "/adapter/adapter_config.json"));
  EXPECT_EQ(adapter["peft_type"], "LORA");
  EXPECT_EQ(adapter["r"], 8);
  EXPECT_EQ(adapter["lora_alpha"], 16);
  EXPECT_EQ(adapter["target_modules"],
            nlohmann::json::array({"q_proj", "k_proj", "v_proj", "o_proj"}));
  auto lora = ReadTensorFile(o.out_dir + "/adapter/adapter_model.safetensors");
  ASSERT_TRUE(lora.ok());
  EXPECT_EQ(lora->size(), 2u * 4u * 2u);
  EXPECT_EQ(lora->at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").sizes(),
            (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(lora->at("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{32, 8}));

  // transformers and peft on the same directory.
  if (VenvPython().empty()) GTEST_SKIP() << "no .venv: the Python checks need scripts/setup";
  at::NoGradGuard no_grad;
  auto softmax = model::LlamaModel::Create(loaded->config, loaded->model->weights());
  ASSERT_TRUE(softmax.ok());
  const at::Tensor ids = validation[0];
  auto logits = (*softmax)->Forward(ids.unsqueeze(0));
  ASSERT_TRUE(logits.ok());
  ASSERT_TRUE(WriteTensorFile(dir.path() + "/ref.safetensors",
                              {{"input_ids", ids}, {"logits", (*logits)[0].contiguous()}})
                  .ok());
  WriteText(dir.path() + "/cases.json", nlohmann::json{{"cases", cases}}.dump());
  std::string output;
  const int rc = RunHfCheck(o.out_dir + " --tokens " + dir.path() + "/cases.json --gguf " + kGguf +
                                " --logits " + dir.path() + "/ref.safetensors --peft-base " +
                                kFixtures + "/models/llama3_scaled",
                            &output);
  std::printf("%s", output.c_str());
  EXPECT_EQ(rc, 0) << output;
}

// delta/ holds only the student's own tensors (bfloat16); with the teacher
// beside it, it loads as the same student, up to bf16 rounding.
TEST(ConvertGguf, DeltaRebuildsTheStudentOnTheTeacher) {
  TempDir dir;
  ConvertOptions o = TinyOptions(dir);
  auto r = Convert(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string delta = o.out_dir + "/delta";
  EXPECT_EQ(ListDir(delta), (std::vector<std::string>{"README.md", "adapter_config.json",
                                                      "adapter_model.safetensors", "config.json",
                                                      "model.safetensors"}));
  const std::string card = Slurp(delta + "/README.md");
  EXPECT_NE(card.find("A delta over llama3_scaled.gguf"), std::string::npos) << card;
  EXPECT_NE(card.find("teacher perplexity"), std::string::npos) << card;
  auto missing = model::LoadModel(delta);
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("llama3_scaled.gguf"), std::string::npos);

  ASSERT_EQ(::symlink(kGguf.c_str(), (o.out_dir + "/llama3_scaled.gguf").c_str()), 0);
  auto full = model::LoadModel(o.out_dir);
  auto small = model::LoadModel(delta);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_TRUE(small->linear_attention.has_value());
  EXPECT_EQ(small->model->attention(0).name(), "lolcats");
  ASSERT_NE(small->tokenizer, nullptr);
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::tensor(std::vector<int64_t>{5, 9, 3, 17, 2, 30, 11, 4, 8, 21}, at::kLong)
                             .unsqueeze(0);
  const at::Tensor a = *full->model->Forward(ids), b = *small->model->Forward(ids);
  const double rel = ((a - b).abs().max() / a.abs().max()).item<double>();
  std::printf("delta vs full export: max relative logit difference %.3g\n", rel);
  EXPECT_LT(rel, 2e-2);
  EXPECT_GT(rel, 0) << "the delta is stored in bfloat16";

  // A delta made on another base refuses to load.
  nlohmann::json config = nlohmann::json::parse(Slurp(delta + "/config.json"));
  EXPECT_TRUE(config["linearize_delta"]["base_sha256"].get<std::string>().starts_with("sha256:"));
  config["linearize_delta"]["base_sha256"] = "sha256:" + std::string(64, '0');
  WriteText(delta + "/config.json", config.dump());
  auto other = model::LoadModel(delta);
  ASSERT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  std::printf("errors: %s | %s\n", missing.status().ToString().c_str(),
              other.status().ToString().c_str());
}

// A block of a GGUF teacher (blockwise transfer from cached inputs): the
// same Hugging Face view and identity, only that layer's weights, and the
// layer computes what the whole teacher's does.
TEST(ConvertGguf, TeacherBlockHoldsOnlyItsLayers) {
  auto whole = LoadTeacher(kGguf);
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto block = LoadTeacher(kGguf, {}, model::LayerRange{1, 1});
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_EQ(block->config_json, whole->config_json);
  EXPECT_EQ(block->files, whole->files);
  EXPECT_EQ(block->identity, whole->identity);
  const model::LlamaModel& m = *block->loaded.model;
  ASSERT_TRUE(m.only_layers().has_value());
  EXPECT_EQ(m.num_layers(), whole->loaded.model->num_layers());
  const model::ModelWeights& w = m.weights();
  EXPECT_FALSE(w.embed.defined());
  EXPECT_FALSE(w.lm_head.defined());
  EXPECT_FALSE(w.layers[0].q_proj.defined());
  EXPECT_TRUE(at::equal(w.layers[1].q_proj, whole->loaded.model->weights().layers[1].q_proj));
  // Layer 1's parameters and no others.
  const io::ModelConfig& c = block->loaded.config;
  model::ModelWeights rest = whole->loaded.model->weights();
  rest.layers[1] = {};
  EXPECT_EQ(model::ParameterCount(c, w) + model::ParameterCount(c, rest),
            model::ParameterCount(c, whole->loaded.model->weights()));
  const at::Tensor hidden = at::randn({1, 7, block->loaded.config.hidden_size});
  auto a = m.ForwardLayers(hidden, 1, 1);
  auto b = whole->loaded.model->ForwardLayers(hidden, 1, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(at::equal(*a, *b));
  EXPECT_EQ(m.Forward(at::zeros({1, 3}, at::kLong)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ConvertGguf, BadTeachersAndOutputsFailBeforeTraining) {
  TempDir dir;
  ConvertOptions o = TinyOptions(dir);
  // A truncated GGUF names the file.
  const std::string truncated = dir.path() + "/truncated.gguf";
  WriteText(truncated, Slurp(kGguf).substr(0, 5000));
  o.teacher = truncated;
  auto r = Convert(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated.gguf"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());
  // Neither a directory nor a .gguf file.
  o.teacher = dir.path() + "/train.txt";
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("train.txt"), std::string::npos);
  // Missing.
  o.teacher = dir.path() + "/missing.gguf";
  EXPECT_EQ(Convert(o).status().code(), absl::StatusCode::kNotFound);
  // An output that is a file.
  o.teacher = kGguf;
  o.out_dir = dir.path() + "/train.txt";
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("out_dir"), std::string::npos);
  // The teacher's own directory as the output.
  o.teacher = kFixtures + "/models/llama3_scaled";
  o.out_dir = kFixtures + "/models/../models/llama3_scaled";
  r = Convert(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("teacher's directory"), std::string::npos) << r.status();
  std::printf("errors: %s\n", r.status().ToString().c_str());
  // Nothing was written anywhere.
  EXPECT_FALSE(PathExists(dir.path() + "/out"));
}

}  // namespace
}  // namespace linearize::convert
