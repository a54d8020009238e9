// The model against transformers on the tiny fixtures: logits, greedy
// decoding, and the KV cache against full recomputation.
#include <ATen/ATen.h>

#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/io/model_config.h"
#include "common/model/gguf_weights.h"
#include "common/model/llama_model.h"
#include "common/model/load.h"
#include "common/model/lora.h"
#include "common/model/softmax_attention.h"
#include "gtest/gtest.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::model {
namespace {

using testing::Ids;
using testing::ReadReference;
using testing::Reference;
using testing::RelativeError;

constexpr double kLogitTolerance = 1e-4;  // max abs diff / max abs reference
constexpr double kCacheTolerance = 1e-5;  // cached decode vs full recompute

std::unique_ptr<LlamaModel> LoadFixture(const std::string& variant) {
  absl::StatusOr<LoadedModel> loaded = LoadModel(testing::ModelDir(variant));
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return nullptr;
  return std::move(loaded->model);
}

at::Tensor Logits(const LlamaModel& model, const at::Tensor& ids, Memory* memory = nullptr) {
  absl::StatusOr<at::Tensor> logits = model.Forward(ids, memory);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : at::Tensor();
}

class FixtureModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = LoadFixture(GetParam());
    ASSERT_NE(model_, nullptr);
    ref_ = ReadReference(GetParam());
    ASSERT_TRUE(ref_.logits.defined());
  }
  std::unique_ptr<LlamaModel> model_;
  Reference ref_;
};

TEST_P(FixtureModelTest, LogitsMatchTransformers) {
  const at::Tensor logits = Logits(*model_, Ids(ref_.input_ids));
  ASSERT_EQ(logits.sizes().vec(),
            (std::vector<int64_t>{1, static_cast<int64_t>(ref_.input_ids.size()),
                                  model_->vocab_size()}));
  EXPECT_EQ(logits.scalar_type(), at::kFloat);
  const double err = RelativeError(logits[0], ref_.logits);
  std::printf("%s: logits relative error %.2e\n", GetParam().c_str(), err);
  EXPECT_LT(err, kLogitTolerance) << GetParam();
}

TEST_P(FixtureModelTest, GreedyContinuationMatchesTransformers) {
  std::unique_ptr<Memory> memory = model_->NewMemory(1);
  at::Tensor logits = Logits(*model_, Ids(ref_.prompt_ids), memory.get());
  std::vector<int64_t> out;
  for (size_t i = 0; i < ref_.greedy_ids.size(); ++i) {
    const int64_t next = logits[0][-1].argmax().item<int64_t>();
    out.push_back(next);
    logits = Logits(*model_, Ids({next}), memory.get());
  }
  EXPECT_EQ(out, ref_.greedy_ids);
  EXPECT_EQ(memory->position(),
            static_cast<int64_t>(ref_.prompt_ids.size() + ref_.greedy_ids.size()));
}

TEST_P(FixtureModelTest, KvCacheDecodeEqualsFullRecompute) {
  const at::Tensor ids = Ids(ref_.input_ids);
  const int64_t n = ids.size(1);
  const at::Tensor full = Logits(*model_, ids);
  // Token by token after a 3-token prefill.
  std::unique_ptr<Memory> memory = model_->NewMemory(1);
  std::vector<at::Tensor> parts = {Logits(*model_, ids.slice(1, 0, 3), memory.get())};
  for (int64_t i = 3; i < n; ++i) {
    parts.push_back(Logits(*model_, ids.slice(1, i, i + 1), memory.get()));
  }
  EXPECT_LT(RelativeError(at::cat(parts, 1), full), kCacheTolerance);
  // Chunks of several tokens after cached ones (the masked path).
  std::unique_ptr<Memory> chunked = model_->NewMemory(1, /*capacity=*/2);
  parts = {Logits(*model_, ids.slice(1, 0, 2), chunked.get()),
           Logits(*model_, ids.slice(1, 2, 7), chunked.get()),
           Logits(*model_, ids.slice(1, 7, n), chunked.get())};
  EXPECT_LT(RelativeError(at::cat(parts, 1), full), kCacheTolerance);
  EXPECT_EQ(chunked->position(), n);
  EXPECT_GT(chunked->bytes(), 0);
}

TEST_P(FixtureModelTest, BatchEqualsSeparateSequences) {
  const at::Tensor a = Ids(ref_.input_ids);
  const at::Tensor b = at::flip(a, {1});
  const at::Tensor both = Logits(*model_, at::cat({a, b}, 0));
  EXPECT_LT(RelativeError(both[0], Logits(*model_, a)[0]), kCacheTolerance);
  EXPECT_LT(RelativeError(both[1], Logits(*model_, b)[0]), kCacheTolerance);
}

TEST_P(FixtureModelTest, ForkedMemoryContinuesIndependently) {
  const at::Tensor ids = Ids(ref_.input_ids);
  std::unique_ptr<Memory> memory = model_->NewMemory(1);
  Logits(*model_, ids.slice(1, 0, 6), memory.get());
  std::unique_ptr<Memory> fork = memory->Clone();
  EXPECT_EQ(fork->position(), 6);
  // The original continues with the input, the fork with other tokens.
  const at::Tensor tail = ids.slice(1, 6, 10);
  const at::Tensor other = at::tensor({3, 4, 5, 6}, at::kLong).unsqueeze(0);
  const at::Tensor original = Logits(*model_, tail, memory.get());
  const at::Tensor forked = Logits(*model_, other, fork.get());
  EXPECT_LT(RelativeError(original, Logits(*model_, ids.slice(1, 0, 10)).slice(1, 6, 10)),
            kCacheTolerance);
  EXPECT_LT(RelativeError(forked, Logits(*model_, at::cat({ids.slice(1, 0, 6), other}, 1))
                                      .slice(1, 6, 10)),
            kCacheTolerance);
}

TEST_P(FixtureModelTest, LastLogitsAreTheLastRow) {
  const at::Tensor ids = Ids(ref_.input_ids);
  absl::StatusOr<at::Tensor> last = model_->Forward(ids, nullptr, LlamaModel::Logits::kLast);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->size(1), 1);
  EXPECT_LT(RelativeError((*last)[0][0], Logits(*model_, ids)[0][-1]), 1e-6);
}

// A forward split into layer blocks (blockwise attention transfer) is the
// plain forward: embed, then layers [0, k), then [k, L), then the final
// norm and LM head give the same logits.
TEST_P(FixtureModelTest, LayerBlocksComposeIntoTheForward) {
  const at::Tensor ids = Ids(ref_.input_ids);
  absl::StatusOr<at::Tensor> x = model_->Embed(ids);
  ASSERT_TRUE(x.ok()) << x.status();
  const int64_t layers = model_->num_layers(), k = layers / 2;
  absl::StatusOr<at::Tensor> mid = model_->ForwardLayers(*x, 0, k);
  ASSERT_TRUE(mid.ok()) << mid.status();
  absl::StatusOr<at::Tensor> out = model_->ForwardLayers(*mid, k, layers - k);
  ASSERT_TRUE(out.ok()) << out.status();
  absl::StatusOr<at::Tensor> hidden = model_->ForwardHidden(ids);
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  const at::Tensor normed = kernels::RmsNorm(*out, model_->weights().final_norm,
                                             model_->config().rms_norm_eps);
  EXPECT_TRUE(at::equal(normed, *hidden));
  absl::Status range = model_->ForwardLayers(*x, k, layers).status();
  EXPECT_EQ(range.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(range.message().find("outside the model's"), std::string::npos) << range;
  EXPECT_EQ(model_->ForwardLayers(ids, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

// FuseProjections: one q/k/v GEMM, one gate/up GEMM and the residuals added
// by the o/down GEMMs give transformers' logits and the unfused model's, on
// every fixture (qwen2's q/k/v biases included), with a KV cache and with
// LoRA adapters that are not merged; the separate weights become views.
TEST_P(FixtureModelTest, FusedProjectionsGiveTheSameLogits) {
  std::unique_ptr<LlamaModel> fused = LoadFixture(GetParam());
  ASSERT_NE(fused, nullptr);
  fused->FuseProjections();
  ASSERT_TRUE(fused->fused());
  const LayerWeights& l = fused->weights().layers[0];
  EXPECT_TRUE(AdjacentRows({l.q_proj, l.k_proj, l.v_proj}).defined());
  EXPECT_TRUE(AdjacentRows({l.gate_proj, l.up_proj}).defined());
  // A model made from the fused weights shares them instead of copying.
  absl::StatusOr<std::unique_ptr<LlamaModel>> again =
      LlamaModel::Create(fused->config(), fused->weights());
  ASSERT_TRUE(again.ok()) << again.status();
  (*again)->FuseProjections();
  EXPECT_EQ((*again)->weights().layers[0].q_proj.data_ptr(), l.q_proj.data_ptr());

  const at::Tensor ids = Ids(ref_.input_ids);
  const at::Tensor plain = Logits(*model_, ids);
  EXPECT_LT(RelativeError(Logits(*fused, ids)[0], ref_.logits), kLogitTolerance);
  EXPECT_LT(RelativeError(Logits(*fused, ids), plain), kCacheTolerance);
  {
    // Outside autograd the o/down GEMMs accumulate into the residual in place.
    at::NoGradGuard no_grad;
    EXPECT_LT(RelativeError(Logits(*fused, ids), plain), kCacheTolerance);
    std::unique_ptr<Memory> memory = fused->NewMemory(1);
    std::vector<at::Tensor> parts = {Logits(*fused, ids.slice(1, 0, 4), memory.get())};
    for (int64_t i = 4; i < ids.size(1); ++i) {
      parts.push_back(Logits(*fused, ids.slice(1, i, i + 1), memory.get()));
    }
    EXPECT_LT(RelativeError(at::cat(parts, 1), plain), kCacheTolerance);
  }

  LoraOptions options;
  absl::StatusOr<LoraAdapters> lora =
      NewLoraAdapters(fused->config(), options, /*seed=*/5, c10::Device(c10::kCPU));
  ASSERT_TRUE(lora.ok()) << lora.status();
  {
    at::NoGradGuard no_grad;
    for (auto& layer : lora->layers) {
      for (LoraPair& pair : layer) pair.b.normal_(0, 0.05);  // B = 0 would change nothing
    }
  }
  auto shared = std::make_shared<const LoraAdapters>(*std::move(lora));
  model_->SetLora(shared);
  fused->SetLora(shared);
  const at::Tensor with_lora = Logits(*model_, ids);
  EXPECT_GT(RelativeError(with_lora, plain), 1e-3);
  EXPECT_LT(RelativeError(Logits(*fused, ids), with_lora), kCacheTolerance);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureModelTest,
                         ::testing::Values("llama", "llama3_scaled", "mistral", "qwen2"),
                         [](const auto& info) { return info.param; });

TEST(FixtureConfig, VariantsHaveTheirFeatures) {
  absl::StatusOr<LoadedModel> qwen = LoadModel(testing::ModelDir("qwen2"));
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_TRUE(qwen->model->weights().layers[0].q_bias.defined());
  EXPECT_FALSE(qwen->model->weights().layers[0].o_bias.defined());
  absl::StatusOr<LoadedModel> mistral = LoadModel(testing::ModelDir("mistral"));
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(mistral->config.sliding_window, 8);
  EXPECT_FALSE(mistral->model->weights().layers[0].q_bias.defined());
  absl::StatusOr<LoadedModel> llama3 = LoadModel(testing::ModelDir("llama3_scaled"));
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_TRUE(llama3->model->weights().lm_head.is_same(llama3->model->weights().embed));
  EXPECT_EQ(llama3->config.rope_scaling.type, "llama3");
  // With the tiny Llama 3 tokenizer and its template.
  ASSERT_NE(llama3->tokenizer, nullptr);
  EXPECT_EQ(llama3->model->vocab_size(), 1511);
  EXPECT_EQ(llama3->chat_format, tokenizer::ChatFormat::kLlama3);
  std::vector<int32_t> stops = StopTokenIds(*llama3);
  std::sort(stops.begin(), stops.end());
  EXPECT_EQ(stops, (std::vector<int32_t>{1502, 1509}));  // <|end_of_text|>, <|eot_id|>
}

// The same weights written as llama.cpp would (permuted Q/K, ggml names,
// the llama3 schedule as rope_freqs, the tokenizer in the metadata) give
// transformers' logits.
TEST(GgufFixture, Llama3ScaledMatchesTransformers) {
  absl::StatusOr<LoadedModel> gguf = LoadModel(testing::FixturePath("models/llama3_scaled.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  ASSERT_TRUE(gguf->model->weights().rope_freq_factors.defined());
  EXPECT_TRUE(gguf->model->weights().lm_head.is_same(gguf->model->weights().embed));
  ASSERT_NE(gguf->tokenizer, nullptr);
  EXPECT_EQ(gguf->tokenizer->vocab_size(), 1511);
  EXPECT_EQ(gguf->chat_format, tokenizer::ChatFormat::kLlama3);

  std::unique_ptr<LlamaModel> hf = LoadFixture("llama3_scaled");
  ASSERT_NE(hf, nullptr);
  const LayerWeights& a = gguf->model->weights().layers[1];
  const LayerWeights& b = hf->weights().layers[1];
  EXPECT_TRUE(at::equal(a.q_proj, b.q_proj));
  EXPECT_TRUE(at::equal(a.k_proj, b.k_proj));
  EXPECT_TRUE(at::equal(a.down_proj, b.down_proj));

  const Reference ref = ReadReference("llama3_scaled");
  const double err = RelativeError(Logits(*gguf->model, Ids(ref.input_ids))[0], ref.logits);
  std::printf("llama3_scaled.gguf: logits relative error %.2e\n", err);
  EXPECT_LT(err, kLogitTolerance);
}

// llama.cpp's convert_hf_to_gguf.py permute, for the inverse test.
at::Tensor LlamaCppPermute(const at::Tensor& w, int64_t heads) {
  return w.reshape({heads, 2, w.size(0) / heads / 2, w.size(1)})
      .transpose(1, 2)
      .reshape(w.sizes());
}

TEST(UnpermuteQk, InvertsLlamaCppPermutation) {
  const at::Tensor w = at::arange(8 * 4 * 3, at::kFloat).reshape({8 * 4, 3});
  const at::Tensor permuted = LlamaCppPermute(w, 4);
  EXPECT_FALSE(at::equal(permuted, w));
  EXPECT_TRUE(at::equal(UnpermuteQk(permuted, 4), w));
  // Per head of 8 rows, llama.cpp interleaves the halves: 0 4 1 5 2 6 3 7.
  EXPECT_TRUE(at::equal(permuted.select(1, 0).slice(0, 0, 8).div(3).to(at::kLong),
                        at::tensor({0, 4, 1, 5, 2, 6, 3, 7}, at::kLong)));
}

TEST(Forward, RejectsBadInput) {
  std::unique_ptr<LlamaModel> model = LoadFixture("llama");
  ASSERT_NE(model, nullptr);
  auto expect_invalid = [&](const at::Tensor& ids, Memory* memory, const std::string& needle) {
    absl::StatusOr<at::Tensor> out = model->Forward(ids, memory);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(needle), std::string::npos) << out.status();
  };
  expect_invalid(at::tensor({1, 2}, at::kLong), nullptr, "[B, T]");
  expect_invalid(at::tensor({1, 2}, at::kInt).unsqueeze(0), nullptr, "int64");
  expect_invalid(at::tensor({1, 512}, at::kLong).unsqueeze(0), nullptr, "512");
  expect_invalid(at::tensor({-3, 1}, at::kLong).unsqueeze(0), nullptr, "-3");
  expect_invalid(at::empty({1, 0}, at::kLong), nullptr, "[1, 0]");
  std::unique_ptr<Memory> two = model->NewMemory(2);
  expect_invalid(at::tensor({1, 2}, at::kLong).unsqueeze(0), two.get(), "batch");
  EXPECT_EQ(two->position(), 0);  // nothing consumed by a rejected call
}

// An attention that delegates to the softmax one and counts its calls: the
// plug-in point is what the model uses.
class CountingAttention final : public AttentionLayer {
 public:
  CountingAttention(const io::ModelConfig& c, int* calls)
      : inner_(c.num_attention_heads, c.num_key_value_heads, c.head_dim), calls_(calls) {}
  std::string_view name() const override { return "counting"; }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     AttentionState* state, int64_t position) const override {
    ++*calls_;
    return inner_.Forward(q, k, v, state, position);
  }
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t capacity,
                                           const at::TensorOptions& options) const override {
    return inner_.NewState(batch, capacity, options);
  }

 private:
  SoftmaxAttention inner_;
  int* calls_;
};

class ZeroAttention final : public AttentionLayer {
 public:
  std::string_view name() const override { return "zero"; }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor&, const at::Tensor&, AttentionState*,
                     int64_t) const override {
    return at::zeros_like(q);
  }
  std::unique_ptr<AttentionState> NewState(int64_t, int64_t,
                                           const at::TensorOptions&) const override {
    return nullptr;
  }
};

TEST(AttentionLayer, ReplacementsAreUsed) {
  std::unique_ptr<LlamaModel> model = LoadFixture("llama");
  ASSERT_NE(model, nullptr);
  const Reference ref = ReadReference("llama");
  const at::Tensor ids = Ids(ref.input_ids);
  int calls = 0;
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    model->SetAttention(i, std::make_unique<CountingAttention>(model->config(), &calls));
  }
  EXPECT_LT(RelativeError(Logits(*model, ids)[0], ref.logits), kLogitTolerance);
  EXPECT_EQ(calls, model->num_layers());
  EXPECT_EQ(model->attention(0).name(), "counting");
  model->SetAttention(1, std::make_unique<ZeroAttention>());
  EXPECT_GT(RelativeError(Logits(*model, ids)[0], ref.logits), 1e-2);
}

}  // namespace
}  // namespace linearize::model

namespace linearize::model {
namespace {

// Counts the autograd nodes of the checkpointed layers below `y`.
int CheckpointNodes(const at::Tensor& y) {
  std::vector<torch::autograd::Node*> todo = {y.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int found = 0;
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    found += n->name().find("CheckpointedLayer") != std::string::npos;
    for (const auto& edge : n->next_edges()) todo.push_back(edge.function.get());
  }
  return found;
}

// With checkpointing, every layer after the first is one recomputing node in
// the graph, and the LoRA gradients are those of the plain forward.
TEST(ActivationCheckpointing, RecomputesLayersWithTheSameGradients) {
  auto model = LoadFixture("llama");
  ASSERT_NE(model, nullptr);
  LoraOptions options;
  options.rank = 4;
  auto lora = NewLoraAdapters(model->config(), options, 3, model->device());
  ASSERT_TRUE(lora.ok()) << lora.status();
  auto adapters = std::make_shared<LoraAdapters>(*std::move(lora));
  at::manual_seed(5);
  for (auto& [name, t] : adapters->Named()) {
    at::NoGradGuard no_grad;
    t.normal_(0, 0.05);  // B starts at zero: make every factor matter
    t.set_requires_grad(true);
  }
  model->SetLora(adapters);
  const at::Tensor ids = at::randint(0, model->vocab_size(), {2, 9}, at::kLong);
  std::vector<at::Tensor> grads[2];
  for (int on = 0; on < 2; ++on) {
    model->SetActivationCheckpointing(on == 1);
    const at::Tensor logits = *model->Forward(ids);
    EXPECT_EQ(CheckpointNodes(logits), on == 1 ? model->num_layers() - 1 : 0);
    logits.pow(2).mean().backward();
    for (auto& [name, t] : adapters->Named()) {
      grads[on].push_back(t.grad().clone());
      t.mutable_grad() = at::Tensor();
    }
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    EXPECT_GT(grads[0][i].abs().max().item<double>(), 0) << i;
    EXPECT_LT(RelativeError(grads[1][i], grads[0][i]), 1e-5) << i;
  }
}

}  // namespace
}  // namespace linearize::model
