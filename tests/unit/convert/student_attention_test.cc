// The student attentions inside the tiny llama3_scaled teacher: decoding
// through a Memory (prefill + one token at a time) gives the logits of the
// parallel form; the config section round-trips; bad tensors are refused.
#include "common/model/student_attention.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "common/model/linear_attention_config.h"
#include "common/model/load.h"
#include "common/model/lora.h"
#include "common/model/softmax_attention.h"

namespace linearize::model {
namespace {

const std::string kTeacher = std::string(LINEARIZE_FIXTURES_DIR) + "/models/llama3_scaled";

void ConvertAll(LlamaModel& m, const LinearAttentionConfig& c) {
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    auto a = MakeStudentAttention(c, m.config(), InitStudentTensors(c, m.config(), l, 3));
    ASSERT_TRUE(a.ok()) << a.status();
    m.SetAttention(l, *std::move(a));
  }
}

// The fixture teacher with every layer converted to `recipe` (window 8,
// feature width 16, fresh tensors).
void LoadConverted(Recipe recipe, LoadedModel* out) {
  auto loaded = LoadModel(kTeacher);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  LinearAttentionConfig c = DefaultLinearAttentionConfig(recipe);
  c.window = 8;
  c.feature_dim = 16;
  ConvertAll(*loaded->model, c);
  *out = *std::move(loaded);
}

class StudentDecode : public ::testing::TestWithParam<Recipe> {};

TEST_P(StudentDecode, RecurrentDecodeMatchesParallel) {
  LoadedModel loaded;
  ASSERT_NO_FATAL_FAILURE(LoadConverted(GetParam(), &loaded));
  LlamaModel& m = *loaded.model;
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(0, m.vocab_size(), {1, 30},
                                     at::detail::createCPUGenerator(5), at::kLong);
  auto full = m.Forward(ids);
  ASSERT_TRUE(full.ok()) << full.status();
  auto memory = m.NewMemory(1);
  auto prefill = m.Forward(ids.narrow(1, 0, 12), memory.get());
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  std::vector<at::Tensor> parts = {*prefill};
  for (int64_t t = 12; t < 30; ++t) {
    auto step = m.Forward(ids.narrow(1, t, 1), memory.get());
    ASSERT_TRUE(step.ok()) << step.status();
    parts.push_back(*step);
  }
  const at::Tensor decoded = at::cat(parts, 1);
  EXPECT_LT((decoded - *full).abs().max().item<double>(), 1e-3);
  // The state has a fixed size: more tokens do not grow it.
  const int64_t bytes = memory->bytes();
  ASSERT_TRUE(m.Forward(ids.narrow(1, 0, 1), memory.get()).ok());
  EXPECT_EQ(memory->bytes(), bytes);
  // The output differs from the teacher's (the attention really was replaced).
  auto teacher = LoadModel(kTeacher);
  ASSERT_TRUE(teacher.ok());
  EXPECT_GT((*teacher->model->Forward(ids) - *full).abs().max().item<double>(), 1e-4);
}

// A prompt fed through a Memory in three calls (50, 70, 33 tokens) gives the
// outputs of one call and of the stateless parallel form: the later calls
// continue the recurrent state with the parallel prefill (before, they
// stepped token by token). Float64, so the match is tight; LoLCATs with
// sliding and terrace windows, the calls not aligned to the window.
TEST_P(StudentDecode, PromptInThreeCallsEqualsOneCall) {
  LoadOptions options;
  options.weights.dtype = at::kDouble;
  auto loaded = LoadModel(kTeacher, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  LlamaModel& m = *loaded->model;
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(0, m.vocab_size(), {2, 153},
                                     at::detail::createCPUGenerator(6), at::kLong);
  const auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
  };
  for (bool terrace : {false, true}) {
    if (terrace && GetParam() != Recipe::kLolcats) continue;
    LinearAttentionConfig c = DefaultLinearAttentionConfig(GetParam());
    c.window = 16;
    c.feature_dim = 16;
    c.terrace = terrace;
    for (int64_t l = 0; l < m.num_layers(); ++l) {
      StudentTensors t = InitStudentTensors(c, m.config(), l, 4);
      for (auto& [name, tensor] : t) tensor = tensor.to(at::kDouble);
      auto a = MakeStudentAttention(c, m.config(), std::move(t));
      ASSERT_TRUE(a.ok()) << a.status();
      m.SetAttention(l, *std::move(a));
    }
    const std::string what = terrace ? "terrace" : "sliding";
    auto parallel = m.ForwardHidden(ids);
    ASSERT_TRUE(parallel.ok()) << parallel.status();
    auto whole = m.NewMemory(2);
    auto once = m.ForwardHidden(ids, whole.get());
    ASSERT_TRUE(once.ok()) << once.status();
    auto parts = m.NewMemory(2);
    const auto addresses = [&] {
      std::vector<const void*> out;
      for (const auto& layer : parts->Export()) {
        for (const auto& [name, tensor] : layer) out.push_back(tensor.data_ptr());
      }
      return out;
    };
    const std::vector<const void*> before = addresses();
    std::vector<at::Tensor> hidden;
    int64_t from = 0;
    for (int64_t len : {50, 70, 33}) {
      auto h = m.ForwardHidden(ids.narrow(1, from, len), parts.get());
      ASSERT_TRUE(h.ok()) << h.status();
      hidden.push_back(*h);
      from += len;
    }
    EXPECT_EQ(parts->position(), 153);
    // The state is updated in place (a captured decode graph keeps pointing at it).
    EXPECT_EQ(addresses(), before) << what;
    EXPECT_LT(rel(*once, *parallel), 1e-9) << what;
    EXPECT_LT(rel(at::cat(hidden, 1), *once), 1e-9) << what;
    // Both memories hold the same state: the next token gives the same output.
    const at::Tensor next = ids.narrow(1, 0, 1);
    auto a = m.Forward(next, whole.get());
    auto b = m.Forward(next, parts.get());
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_LT(rel(*b, *a), 1e-6) << what;  // logits come back in float32
  }
}

// DecodeBatch keeps its stacked memory between calls of one batch size: the
// rows it gathers are other memories each call, at other positions, and
// every call gives what each memory's own one-token Forward gives (a stale
// row would show). A call of another size makes a new stacked memory.
TEST_P(StudentDecode, DecodeBatchOverChangingMemoriesEqualsOneAtATime) {
  LoadedModel loaded;
  ASSERT_NO_FATAL_FAILURE(LoadConverted(GetParam(), &loaded));
  LlamaModel& m = *loaded.model;
  at::NoGradGuard no_grad;
  const auto gen = at::detail::createCPUGenerator(9);
  std::vector<std::unique_ptr<Memory>> batched, alone;
  for (const int64_t len : {5, 11, 17}) {  // three sessions at different positions
    batched.push_back(m.NewMemory(1));
    const at::Tensor ids = at::randint(0, m.vocab_size(), {1, len}, gen, at::kLong);
    ASSERT_TRUE(m.Forward(ids, batched.back().get()).ok());
    alone.push_back(batched.back()->Clone());
  }
  const std::vector<std::vector<size_t>> calls = {{0, 1}, {1, 2}, {2, 0}, {0, 1, 2}, {2, 1}};
  for (size_t s = 0; s < calls.size(); ++s) {
    std::vector<Memory*> memories;
    std::vector<int64_t> tokens;
    for (size_t j : calls[s]) {
      memories.push_back(batched[j].get());
      tokens.push_back(static_cast<int64_t>((7 * s + 3 * j + 1) % m.vocab_size()));
    }
    auto logits = m.DecodeBatch(at::tensor(tokens, at::kLong), memories);
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t r = 0; r < calls[s].size(); ++r) {
      const size_t j = calls[s][r];
      auto one = m.Forward(at::tensor({tokens[r]}, at::kLong).view({1, 1}), alone[j].get(),
                           LlamaModel::Logits::kLast);
      ASSERT_TRUE(one.ok()) << one.status();
      EXPECT_LT(((*logits)[static_cast<int64_t>(r)] - one->view({-1})).abs().max().item<double>(),
                1e-4)
          << "call " << s << ", memory " << j;
      EXPECT_EQ(batched[j]->position(), alone[j]->position());
    }
  }
}

// The explicit matrix (attention transfer's cross-entropy reads it) is the
// layer: weights times v equals the parallel forward, float64, GQA, with
// keys leaving the window; rows have no weight above the diagonal, and the
// one-normaliser recipes' rows sum to 1. Gradients flow to the layer's tensors.
TEST_P(StudentDecode, AttentionWeightsTimesValuesIsTheForward) {
  auto loaded = LoadModel(kTeacher);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const io::ModelConfig& mc = loaded->config;
  LinearAttentionConfig c = DefaultLinearAttentionConfig(GetParam());
  c.window = 8;
  c.feature_dim = 16;
  StudentTensors t = InitStudentTensors(c, mc, 0, 4);
  for (auto& [name, x] : t) {
    x = (x.to(at::kDouble) + 0.3 * at::randn(x.sizes(), at::kDouble)).requires_grad_(true);
  }
  auto a = MakeStudentAttention(c, mc, t);
  ASSERT_TRUE(a.ok()) << a.status();
  const int64_t b = 2, len = 37, hq = mc.num_attention_heads, hkv = mc.num_key_value_heads,
                d = mc.head_dim;
  const auto x = [&](int64_t h) { return at::randn({b, h, len, d}, at::kDouble); };
  const AttentionInputs in{x(hq), x(hkv), x(hkv), x(hq), x(hkv),
                           at::randn({b, len, mc.hidden_size}, at::kDouble)};
  const at::Tensor w = (*a)->AttentionWeights(in);
  ASSERT_EQ(w.sizes(), (at::IntArrayRef{b, hq, len, len}));
  const at::Tensor y = (*a)->Forward(in, nullptr, 0);
  const at::Tensor v = in.v.repeat_interleave(hq / hkv, 1);
  EXPECT_LT((at::matmul(w, v) - y).abs().max().item<double>() / y.abs().max().item<double>(),
            1e-9);
  EXPECT_EQ(w.triu(1).abs().max().item<double>(), 0.0);
  if (GetParam() != Recipe::kLizard) {
    EXPECT_LT((w.sum(-1) - 1).abs().max().item<double>(), 1e-4);
  }
  if (!t.empty()) {
    (w * at::randn(w.sizes(), at::kDouble)).sum().backward();
    for (const auto& [name, x] : t) {
      ASSERT_TRUE(x.grad().defined()) << name;
      EXPECT_GT(x.grad().abs().max().item<double>(), 0.0) << name;
    }
  }
}

// The teacher's matrix: softmax weights times v is the softmax layer's
// output, with GQA and a sliding window that cuts.
TEST(SoftmaxAttentionWeights, TimesValuesIsTheLayersOutput) {
  for (std::optional<int64_t> window : {std::optional<int64_t>(), std::optional<int64_t>(5)}) {
    const at::Tensor q = at::randn({2, 4, 19, 8}), k = at::randn({2, 2, 19, 8}),
                     v = at::randn({2, 2, 19, 8});
    const at::Tensor w = SoftmaxAttentionWeights(q, k, window);
    const at::Tensor y = SoftmaxAttention(4, 2, 8, window).Forward(q, k, v, nullptr, 0);
    EXPECT_LT((at::matmul(w, v.repeat_interleave(2, 1)) - y).abs().max().item<double>(), 1e-5);
    EXPECT_LT((w.sum(-1) - 1).abs().max().item<double>(), 1e-5);
    if (window) {
      EXPECT_EQ(w.narrow(2, 10, 1).narrow(3, 0, 6).abs().max().item<double>(), 0.0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, StudentDecode,
                         ::testing::Values(Recipe::kLolcats, Recipe::kLizard, Recipe::kLinear),
                         [](const auto& info) { return std::string(RecipeName(info.param)); });

TEST(LinearAttentionConfig, JsonRoundTrip) {
  LinearAttentionConfig c = DefaultLinearAttentionConfig(Recipe::kLizard);
  c.layers = {0, 1};
  c.meta_tokens = 2;
  auto back = LinearAttentionConfigFromJson(LinearAttentionConfigToJson(c), "x");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->recipe, Recipe::kLizard);
  EXPECT_EQ(back->window, 128);
  EXPECT_EQ(back->meta_tokens, 2);
  EXPECT_EQ(back->layers, c.layers);
  auto bad = LinearAttentionConfigFromJson(nlohmann::json{{"recipe", "mamba"}}, "cfg.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("lolcats, lizard, linear"), std::string::npos);
}

TEST(StudentAttention, RejectsWrongShapes) {
  auto loaded = LoadModel(kTeacher);
  ASSERT_TRUE(loaded.ok());
  const LinearAttentionConfig c = DefaultLinearAttentionConfig(Recipe::kLolcats);
  StudentTensors t = InitStudentTensors(c, loaded->config, 0, 0);
  t["window_factor"] = at::zeros({3});
  auto a = MakeStudentAttention(c, loaded->config, t);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("window_factor"), std::string::npos);
  t.erase("feature_map_q.weight");
  a = MakeStudentAttention(c, loaded->config, t);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("missing tensor feature_map_q.weight"), std::string::npos);
}

TEST(Lora, FreshAdaptersLeaveTheModelUnchangedAndMergeMatches) {
  auto loaded = LoadModel(kTeacher);
  ASSERT_TRUE(loaded.ok());
  LlamaModel& m = *loaded->model;
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::arange(1, 20, at::kLong).unsqueeze(0);
  const at::Tensor base = *m.Forward(ids);
  auto lora = NewLoraAdapters(m.config(), LoraOptions{}, 1, m.device());
  ASSERT_TRUE(lora.ok()) << lora.status();
  auto shared = std::make_shared<LoraAdapters>(*std::move(lora));
  m.SetLora(shared);
  EXPECT_TRUE(at::equal(*m.Forward(ids), base));
  for (auto& layer : shared->layers) {
    for (auto& p : layer) p.b.normal_(0, 0.05);
  }
  const at::Tensor adapted = *m.Forward(ids);
  EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3);
  // Merging B A into the weights gives the same logits.
  ModelWeights w = m.weights();
  for (size_t l = 0; l < w.layers.size(); ++l) {
    auto& lw = w.layers[l];
    lw.q_proj = MergeLora(lw.q_proj, shared->layers[l][0], shared->scale);
    lw.k_proj = MergeLora(lw.k_proj, shared->layers[l][1], shared->scale);
    lw.v_proj = MergeLora(lw.v_proj, shared->layers[l][2], shared->scale);
    lw.o_proj = MergeLora(lw.o_proj, shared->layers[l][3], shared->scale);
  }
  auto merged = LlamaModel::Create(m.config(), w);
  ASSERT_TRUE(merged.ok());
  EXPECT_LT((*(*merged)->Forward(ids) - adapted).abs().max().item<double>(), 1e-4);
}

}  // namespace
}  // namespace linearize::model
