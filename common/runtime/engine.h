// Continuous batching for one model. A loop thread advances every running
// request by one step per iteration: a prefill chunk, or one decoded token
// (the decodes of a recurrent model share one batched forward,
// LlamaModel::DecodeBatch). A long prompt therefore never stalls other
// sessions' tokens, and a cancelled request leaves within one step.
//
// Requests work on a caller-owned SessionState, which the caller must not
// touch from Submit until the sink's OnEnd. The state then holds the input
// and every token streamed (and the chat turn-end marker when one is set).
// If the request fails or is cancelled before its first token, the state is
// restored to what it was before the call.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/model/llama_model.h"
#include "common/runtime/sampler.h"
#include "common/runtime/state_codec.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::runtime {

struct EngineOptions {
  int64_t max_batch = 64;       // running requests; more wait in FIFO order
  int64_t prefill_chunk = 512;  // most prompt tokens one step feeds a request
};

struct StreamRequest {
  SessionState* state = nullptr;  // required; see the file comment
  std::vector<int32_t> input;     // fed first; may be empty when state->logits is set
  // Fed after generation ends (a chat turn's end-of-turn marker). When the
  // output already ends with turn_end[0], only the rest is fed.
  std::vector<int32_t> turn_end;
  SamplingParams sampling;
  int64_t max_tokens = 256;              // >= 1
  std::vector<int32_t> stop_token_ids;   // end generation (the token is returned)
  std::vector<std::string> stop_strings; // end generation (the string is not returned)
  int64_t logprobs = 0;                  // alternatives per token; 0: none
  bool include_special_tokens = false;
  int64_t max_context = 0;  // most tokens the state may hold; 0: unlimited
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

enum class StreamFinish { kStop, kLength, kCancelled, kContextLimit, kError };

struct StreamDelta {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenLogprobs> logprobs;  // one per id when requested
};

struct StreamEnd {
  StreamFinish reason = StreamFinish::kLength;
  absl::Status error;        // set with kError (the state was restored)
  std::string matched_stop;  // stop string or the stop token's text
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double queue_seconds = 0, prefill_seconds = 0, first_token_seconds = 0, decode_seconds = 0;
  int64_t tokens_seen = 0;   // the state's position afterwards
};

// Receives a request's events on the engine thread; keep them quick.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void OnDelta(StreamDelta delta) = 0;
  virtual void OnEnd(StreamEnd end) = 0;  // exactly once, last
};

class Engine {
 public:
  class Handle;

  // `tokenizer` decodes the streamed text. Starts the loop thread.
  Engine(const model::LlamaModel& model, const tokenizer::Tokenizer& tokenizer,
         EngineOptions options = {});
  // Cancels every request (each gets OnEnd) and joins the loop.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Checks the request (INVALID_ARGUMENT naming the field) and queues it.
  // The handle cancels it.
  absl::StatusOr<std::shared_ptr<Handle>> Submit(StreamRequest request,
                                                 std::shared_ptr<StreamSink> sink);

  struct Stats {
    int64_t running = 0, waiting = 0;
    int64_t steps = 0;              // loop iterations that did work
    int64_t batched_decodes = 0;    // tokens decoded in batches of >= 2
  };
  Stats stats() const;
  // Called after each step with the number of decodes it batched (metrics).
  void SetStepObserver(std::function<void(int64_t batch)> observer);

 private:
  struct Active;
  void Loop();
  bool Step();  // false when there was nothing to do
  void Finish(Active& a, StreamFinish reason);

  const model::LlamaModel& model_;
  const tokenizer::Tokenizer& tokenizer_;
  const EngineOptions options_;
  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Active>> waiting_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::function<void(int64_t)> observer_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Active>> running_;  // loop thread only
  std::thread loop_;
};

class Engine::Handle {
 public:
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

std::string_view StreamFinishName(StreamFinish reason);

}  // namespace linearize::runtime
