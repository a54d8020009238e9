// The continuous-batching engine: the same tokens as the plain generator,
// batched decodes equal to one-at-a-time ones, a state that continues across
// calls exactly as a single call would, cancellation and stop strings.
#include "common/runtime/engine.h"

#include <ATen/ATen.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "common/model/load.h"
#include "common/runtime/generator.h"
#include "gtest/gtest.h"
#include "tests/unit/inference/tiny_models.h"

namespace linearize::runtime {
namespace {

// Collects a request's events; Wait blocks until OnEnd.
class Collect final : public StreamSink {
 public:
  void OnDelta(StreamDelta d) override {
    absl::MutexLock lock(&mu_);
    text += d.text;
    ids.insert(ids.end(), d.ids.begin(), d.ids.end());
    ++deltas;
    if (on_delta) on_delta();
  }
  void OnEnd(StreamEnd e) override {
    {
      absl::MutexLock lock(&mu_);
      end = std::move(e);
    }
    done.Notify();
  }
  void Wait() { done.WaitForNotification(); }
  absl::Mutex mu_;
  std::string text;
  std::vector<int32_t> ids;
  int deltas = 0;
  std::function<void()> on_delta;
  StreamEnd end;
  absl::Notification done;
};

class EngineTest : public ::testing::TestWithParam<std::optional<model::Recipe>> {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("engine");
    testing::WriteTinyModel(dir_, GetParam());
    auto loaded = model::LoadModel(dir_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = std::move(*loaded);
    engine_ = std::make_unique<Engine>(*loaded_.model, *loaded_.tokenizer, EngineOptions{});
  }
  void TearDown() override {
    engine_.reset();
    testing::RemoveTree(dir_);
  }
  SessionState Fresh() { return SessionState{loaded_.model->NewMemory(1), {}}; }

  // Runs one request to its end.
  std::shared_ptr<Collect> Run(SessionState& state, std::vector<int32_t> input, int64_t max_tokens,
                               std::vector<std::string> stops = {}) {
    StreamRequest r;
    r.state = &state;
    r.input = std::move(input);
    r.max_tokens = max_tokens;
    r.stop_strings = std::move(stops);
    auto sink = std::make_shared<Collect>();
    auto handle = engine_->Submit(std::move(r), sink);
    EXPECT_TRUE(handle.ok()) << handle.status();
    if (handle.ok()) sink->Wait();
    return sink;
  }

  std::string dir_;
  model::LoadedModel loaded_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineTest, GreedyTokensEqualTheGenerator) {
  const std::vector<int32_t> prompt = {12, 700, 33, 1024, 5, 6, 7, 8, 9};
  Generator generator(*loaded_.model, loaded_.tokenizer.get());
  GenerateOptions options;
  options.max_new_tokens = 12;
  auto expected = generator.Generate(prompt, options);
  ASSERT_TRUE(expected.ok()) << expected.status();

  SessionState state = Fresh();
  auto got = Run(state, prompt, 12);
  EXPECT_EQ(got->end.reason, StreamFinish::kLength);
  EXPECT_EQ(got->ids, expected->token_ids);
  EXPECT_EQ(got->text, expected->text);
  EXPECT_EQ(got->end.prompt_tokens, 9);
  EXPECT_EQ(got->end.completion_tokens, 12);
  EXPECT_EQ(got->end.tokens_seen, 21);  // every streamed token is in the state
  EXPECT_EQ(state.memory->position(), 21);
}

TEST_P(EngineTest, ThreeCallsContinueLikeOneCall) {
  SessionState session = Fresh();
  std::vector<int32_t> transcript;
  const std::vector<std::vector<int32_t>> parts = {{40, 41, 42, 43, 44}, {900, 901}, {7, 1300, 8}};
  std::vector<int32_t> last;
  for (const auto& part : parts) {
    auto r = Run(session, part, 4);
    transcript.insert(transcript.end(), part.begin(), part.end());
    transcript.insert(transcript.end(), r->ids.begin(), r->ids.end());
    last = r->ids;
  }
  // One call with the whole transcript but the last output.
  transcript.resize(transcript.size() - last.size());
  SessionState whole = Fresh();
  auto once = Run(whole, transcript, 4);
  EXPECT_EQ(once->ids, last);
  EXPECT_EQ(whole.memory->position(), session.memory->position());
}

TEST_P(EngineTest, LongPromptInSmallChunksEqualsOneShotAndInterleaves) {
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 61; ++i) prompt.push_back((i * 37 + 11) % 1400);
  SessionState one = Fresh();
  auto expected = Run(one, prompt, 8);  // the default chunk (512) feeds it in one step
  // 7 prompt tokens per step: 9 prefill steps, each continuing the state.
  engine_ = std::make_unique<Engine>(*loaded_.model, *loaded_.tokenizer,
                                     EngineOptions{/*max_batch=*/64, /*prefill_chunk=*/7});
  SessionState chunked = Fresh();
  auto got = Run(chunked, prompt, 8);
  EXPECT_EQ(got->ids, expected->ids);
  EXPECT_EQ(got->text, expected->text);
  EXPECT_EQ(chunked.memory->position(), one.memory->position());
  EXPECT_LT((chunked.logits - one.logits).abs().max().item<double>(), 1e-3);

  // A short session submitted first streams all its tokens while the long
  // prompt is still being fed (deltas arrive on the engine thread, in order).
  int clock = 0, short_last = -1, long_first = -1;
  SessionState short_state = Fresh(), long_state = Fresh();
  auto short_sink = std::make_shared<Collect>();
  auto long_sink = std::make_shared<Collect>();
  short_sink->on_delta = [&] { short_last = clock++; };
  long_sink->on_delta = [&] {
    if (long_first < 0) long_first = clock;
    ++clock;
  };
  StreamRequest short_req;
  short_req.state = &short_state;
  short_req.input = {5, 6, 7};
  short_req.max_tokens = 4;
  StreamRequest long_req;
  long_req.state = &long_state;
  long_req.input = prompt;
  long_req.max_tokens = 8;
  ASSERT_TRUE(engine_->Submit(std::move(short_req), short_sink).ok());
  ASSERT_TRUE(engine_->Submit(std::move(long_req), long_sink).ok());
  short_sink->Wait();
  long_sink->Wait();
  EXPECT_EQ(short_sink->ids.size(), 4u);
  EXPECT_EQ(long_sink->ids, expected->ids);
  EXPECT_LT(short_last, long_first);
}

TEST_P(EngineTest, ConcurrentSessionsMatchRunningAlone) {
  const int n = 6;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> alone;
  for (int i = 0; i < n; ++i) {
    prompts.push_back({static_cast<int32_t>(10 + i), 200, static_cast<int32_t>(300 + 7 * i)});
    SessionState s = Fresh();
    alone.push_back(Run(s, prompts.back(), 10)->ids);
  }
  std::vector<SessionState> states;
  for (int i = 0; i < n; ++i) states.push_back(Fresh());
  std::vector<std::shared_ptr<Collect>> sinks;
  for (int i = 0; i < n; ++i) {
    StreamRequest r;
    r.state = &states[static_cast<size_t>(i)];
    r.input = prompts[static_cast<size_t>(i)];
    r.max_tokens = 10;
    sinks.push_back(std::make_shared<Collect>());
    ASSERT_TRUE(engine_->Submit(std::move(r), sinks.back()).ok());
  }
  for (int i = 0; i < n; ++i) {
    sinks[static_cast<size_t>(i)]->Wait();
    EXPECT_EQ(sinks[static_cast<size_t>(i)]->ids, alone[static_cast<size_t>(i)]) << "session " << i;
  }
  if (loaded_.model->recurrent()) {
    EXPECT_GT(engine_->stats().batched_decodes, 0);
  }
}

TEST_P(EngineTest, CancelKeepsStreamedTokensOrRestoresTheState) {
  // Cancelled after the first token: the state holds input and streamed tokens.
  SessionState state = Fresh();
  StreamRequest r;
  r.state = &state;
  r.input = {1, 2, 3, 4};
  r.max_tokens = 200;
  r.sampling.temperature = 0;
  auto sink = std::make_shared<Collect>();
  std::shared_ptr<Engine::Handle> handle;
  absl::Notification submitted;
  sink->on_delta = [&] {
    submitted.WaitForNotification();
    handle->Cancel();
  };
  auto h = engine_->Submit(std::move(r), sink);
  ASSERT_TRUE(h.ok());
  handle = *h;
  submitted.Notify();
  sink->Wait();
  EXPECT_EQ(sink->end.reason, StreamFinish::kCancelled);
  EXPECT_LT(sink->ids.size(), 200u);
  EXPECT_GE(sink->ids.size(), 1u);
  EXPECT_EQ(state.memory->position(), 4 + static_cast<int64_t>(sink->ids.size()));

  // Cancelled before any token: the state is as before the call.
  const int64_t before = state.memory->position();
  StreamRequest r2;
  r2.state = &state;
  r2.input = {9, 9, 9};
  r2.max_tokens = 5;
  auto sink2 = std::make_shared<Collect>();
  auto h2 = engine_->Submit(std::move(r2), sink2);
  ASSERT_TRUE(h2.ok());
  (*h2)->Cancel();
  sink2->Wait();
  if (sink2->ids.empty()) {
    EXPECT_EQ(state.memory->position(), before);
  }
}

TEST_P(EngineTest, StopStringEndsAndIsNotReturned) {
  SessionState probe = Fresh();
  auto free_run = Run(probe, {50, 60, 70}, 16);
  ASSERT_GE(free_run->text.size(), 4u);
  const std::string stop = free_run->text.substr(free_run->text.size() / 2, 2);
  SessionState state = Fresh();
  auto stopped = Run(state, {50, 60, 70}, 16, {stop});
  EXPECT_EQ(stopped->end.reason, StreamFinish::kStop);
  EXPECT_EQ(stopped->end.matched_stop, stop);
  EXPECT_EQ(stopped->text, free_run->text.substr(0, free_run->text.find(stop)));
}

TEST_P(EngineTest, BadRequestsNameTheField) {
  SessionState state = Fresh();
  StreamRequest r;
  r.state = &state;
  auto empty = engine_->Submit(r, std::make_shared<Collect>());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  r.input = {1, 999999};
  auto range = engine_->Submit(r, std::make_shared<Collect>());
  EXPECT_NE(std::string(range.status().message()).find("999999"), std::string::npos);
  r.input = {1};
  r.sampling.top_p = 2;
  auto top_p = engine_->Submit(r, std::make_shared<Collect>());
  EXPECT_NE(std::string(top_p.status().message()).find("top_p"), std::string::npos);
}

std::string Name(const ::testing::TestParamInfo<std::optional<model::Recipe>>& p) {
  return p.param ? std::string(model::RecipeName(*p.param)) : "softmax";
}

INSTANTIATE_TEST_SUITE_P(Models, EngineTest,
                         ::testing::Values(std::nullopt, model::Recipe::kLolcats,
                                           model::Recipe::kLizard, model::Recipe::kLinear),
                         Name);

}  // namespace
}  // namespace linearize::runtime
