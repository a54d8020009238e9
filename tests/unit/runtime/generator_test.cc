#include "common/runtime/generator.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "common/model/load.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::runtime {
namespace {

std::vector<int32_t> Int32(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

class GeneratorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(testing::ModelDir(GetParam()));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = *std::move(loaded);
    ref_ = testing::ReadReference(GetParam());
  }
  GenerationResult Run(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                       model::Memory* memory = nullptr, const TokenCallback& cb = nullptr) {
    Generator gen(*loaded_.model, loaded_.tokenizer.get());
    absl::StatusOr<GenerationResult> r = gen.Generate(prompt, options, memory, cb);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : GenerationResult{};
  }
  model::LoadedModel loaded_;
  testing::Reference ref_;
};

TEST_P(GeneratorTest, GreedyMatchesTransformers) {
  GenerateOptions options;
  options.max_new_tokens = static_cast<int64_t>(ref_.greedy_ids.size());
  int calls = 0;
  const GenerationResult r = Run(Int32(ref_.prompt_ids), options, nullptr,
                                 [&](int32_t, std::string_view) { return ++calls > 0; });
  EXPECT_EQ(r.token_ids, Int32(ref_.greedy_ids));
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  EXPECT_EQ(calls, options.max_new_tokens);
  EXPECT_EQ(r.usage.prompt_tokens, static_cast<int64_t>(ref_.prompt_ids.size()));
  EXPECT_EQ(r.usage.completion_tokens, options.max_new_tokens);
  EXPECT_GT(r.timings.prefill_tokens_per_second, 0);
  EXPECT_GT(r.timings.decode_tokens_per_second, 0);
}

TEST_P(GeneratorTest, StopsAtAStopToken) {
  GenerateOptions options;
  options.max_new_tokens = 20;
  const int32_t stop = static_cast<int32_t>(ref_.greedy_ids[4]);
  options.stop_token_ids = {stop};
  size_t first = 0;
  while (ref_.greedy_ids[first] != stop) ++first;
  const GenerationResult r = Run(Int32(ref_.prompt_ids), options);
  EXPECT_EQ(r.finish_reason, FinishReason::kStop);
  EXPECT_EQ(r.stop_token, stop);
  EXPECT_EQ(r.token_ids, std::vector<int32_t>(ref_.greedy_ids.begin(),
                                              ref_.greedy_ids.begin() + first));
}

TEST_P(GeneratorTest, CallbackCanCancel) {
  GenerateOptions options;
  options.max_new_tokens = 20;
  const GenerationResult r = Run(Int32(ref_.prompt_ids), options, nullptr,
                                 [n = 0](int32_t, std::string_view) mutable { return ++n < 3; });
  EXPECT_EQ(r.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(r.token_ids, std::vector<int32_t>(ref_.greedy_ids.begin(),
                                              ref_.greedy_ids.begin() + 3));
}

// A session: two generations through one memory equal one generation over
// the whole history.
TEST_P(GeneratorTest, MemoryCarriesTheConversation) {
  GenerateOptions options;
  options.max_new_tokens = 6;
  std::unique_ptr<model::Memory> memory = loaded_.model->NewMemory(1);
  const std::vector<int32_t> prompt1 = Int32(ref_.prompt_ids);
  const GenerationResult first = Run(prompt1, options, memory.get());
  EXPECT_EQ(memory->position(), static_cast<int64_t>(prompt1.size() + 6));
  const std::vector<int32_t> prompt2 = {5, 6, 7};
  const GenerationResult second = Run(prompt2, options, memory.get());
  EXPECT_EQ(memory->position(), static_cast<int64_t>(prompt1.size() + 6 + 3 + 6));

  std::vector<int32_t> history = prompt1;
  history.insert(history.end(), first.token_ids.begin(), first.token_ids.end());
  history.insert(history.end(), prompt2.begin(), prompt2.end());
  EXPECT_EQ(Run(history, options).token_ids, second.token_ids);
  // The memory stays usable outside the generator.
  EXPECT_TRUE(loaded_.model->Forward(testing::Ids({1, 2}), memory.get()).ok());
}

TEST_P(GeneratorTest, SeededSamplingIsReproducible) {
  GenerateOptions options;
  options.max_new_tokens = 12;
  options.sampling = {/*temperature=*/1.5, /*top_k=*/40, /*top_p=*/0.95, /*seed=*/9};
  const std::vector<int32_t> prompt = Int32(ref_.prompt_ids);
  const GenerationResult a = Run(prompt, options);
  const GenerationResult b = Run(prompt, options);
  EXPECT_EQ(a.token_ids, b.token_ids);
  options.sampling.seed = 10;
  const GenerationResult c = Run(prompt, options);
  EXPECT_NE(a.token_ids, c.token_ids);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GeneratorTest,
                         ::testing::Values("llama", "llama3_scaled", "mistral", "qwen2"),
                         [](const auto& info) { return info.param; });

// llama3_scaled has the tiny Llama 3 tokenizer: text in and text out agree
// with transformers (encoding, the chat prompt, the streamed reply).
class GeneratorTextTest : public GeneratorTest {};

TEST_P(GeneratorTextTest, MatchesTransformers) {
  ASSERT_NE(loaded_.tokenizer, nullptr);
  const nlohmann::json& j = ref_.json;
  const std::vector<int32_t> input =
      loaded_.tokenizer->Encode(j["input_text"].get<std::string>(), /*add_special_tokens=*/true);
  EXPECT_EQ(input, Int32(ref_.input_ids));
  std::vector<tokenizer::ChatMessage> messages;
  for (const auto& m : j["prompt_messages"]) {
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  const std::string prompt = tokenizer::RenderChat(loaded_.chat_format, messages, true);
  EXPECT_EQ(prompt, j["prompt_text"].get<std::string>());
  EXPECT_EQ(loaded_.tokenizer->Encode(prompt), Int32(ref_.prompt_ids));

  GenerateOptions options;
  options.max_new_tokens = static_cast<int64_t>(ref_.greedy_ids.size());
  std::string streamed;
  const GenerationResult r =
      Run(Int32(ref_.prompt_ids), options, nullptr, [&](int32_t, std::string_view piece) {
        streamed += piece;
        return true;
      });
  EXPECT_EQ(r.token_ids, Int32(ref_.greedy_ids));
  EXPECT_EQ(r.text, j["greedy_text"].get<std::string>());
  EXPECT_EQ(streamed, r.text);
}

INSTANTIATE_TEST_SUITE_P(WithTokenizer, GeneratorTextTest, ::testing::Values("llama3_scaled"),
                         [](const auto& info) { return info.param; });

TEST(Generator, ContextLimit) {
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(testing::ModelDir("llama"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Generator gen(*loaded->model, nullptr);
  GenerateOptions options;
  options.max_new_tokens = 20;
  options.max_context = 8;
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  absl::StatusOr<GenerationResult> r = gen.Generate(prompt, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->finish_reason, FinishReason::kLength);
  // 5 prompt tokens + 3 fed back fill 8 positions; the 4th token is sampled
  // from the last logits but cannot be fed.
  EXPECT_EQ(r->token_ids.size(), 4u);

  options.max_context = 4;
  r = gen.Generate(prompt, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("context"), std::string::npos);
}

TEST(Generator, RejectsBadRequests) {
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(testing::ModelDir("llama"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Generator gen(*loaded->model, nullptr);
  const std::vector<int32_t> prompt = {1, 2};
  auto expect = [&](const GenerateOptions& o, std::span<const int32_t> p, const std::string& n) {
    absl::StatusOr<GenerationResult> r = gen.Generate(p, o);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(n), std::string::npos) << r.status();
  };
  GenerateOptions o;
  expect(o, {}, "prompt");
  o.max_new_tokens = -1;
  expect(o, prompt, "max_new_tokens");
  o.max_new_tokens = 4;
  o.sampling.top_p = 2;
  expect(o, prompt, "top_p");
  o.sampling.top_p = 1;
  const std::vector<int32_t> bad = {1, 9999};
  expect(o, bad, "9999");
  o.max_new_tokens = 0;
  absl::StatusOr<GenerationResult> none = gen.Generate(prompt, o);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->token_ids.empty());
  EXPECT_EQ(none->finish_reason, FinishReason::kLength);
}

}  // namespace
}  // namespace linearize::runtime
