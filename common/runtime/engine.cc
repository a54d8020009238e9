#include "common/runtime/engine.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/runtime/stop_matcher.h"

namespace linearize::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return from == Clock::time_point{} || to < from ? 0.0
                                                   : std::chrono::duration<double>(to - from).count();
}

at::Tensor Ids(std::span<const int32_t> ids) {
  std::vector<int64_t> v(ids.begin(), ids.end());
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).view({1, -1});
}

}  // namespace

std::string_view StreamFinishName(StreamFinish reason) {
  switch (reason) {
    case StreamFinish::kStop: return "stop";
    case StreamFinish::kLength: return "length";
    case StreamFinish::kCancelled: return "cancelled";
    case StreamFinish::kContextLimit: return "context_limit";
    case StreamFinish::kError: return "error";
  }
  return "unknown";
}

struct Engine::Active {
  Active(StreamRequest r, std::shared_ptr<StreamSink> s, const tokenizer::Tokenizer& tok,
         Sampler smp)
      : req(std::move(r)), sink(std::move(s)), handle(std::make_shared<Handle>()),
        sampler(std::move(smp)), decoder(tok, !req.include_special_tokens),
        stops(req.stop_strings) {}

  StreamRequest req;
  std::shared_ptr<StreamSink> sink;
  std::shared_ptr<Handle> handle;
  Sampler sampler;
  tokenizer::StreamDecoder decoder;
  StopMatcher stops;
  std::unique_ptr<model::Memory> backup;  // the state before the call
  at::Tensor backup_logits;
  size_t fed = 0;  // input tokens fed so far
  std::vector<int32_t> out;
  bool done = false;
  StreamEnd end;
  Clock::time_point submitted, started, prefilled, first_token, last_token;
};

Engine::Engine(const model::LlamaModel& model, const tokenizer::Tokenizer& tokenizer,
               EngineOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  loop_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  loop_.join();
}

absl::StatusOr<std::shared_ptr<Engine::Handle>> Engine::Submit(StreamRequest request,
                                                               std::shared_ptr<StreamSink> sink) {
  if (request.state == nullptr || request.state->memory == nullptr || sink == nullptr) {
    return absl::InvalidArgumentError("Submit: a session state and a sink are required");
  }
  if (request.input.empty() && !request.state->logits.defined()) {
    return absl::InvalidArgumentError(
        "input: empty, and the session has no tokens to continue from");
  }
  const int64_t vocab = model_.vocab_size();
  for (const auto* ids : {&request.input, &request.turn_end, &request.stop_token_ids}) {
    for (int32_t id : *ids) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
      }
    }
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 1, got ", request.max_tokens));
  }
  if (request.logprobs < 0 || request.logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs must be in [0, 20], got ", request.logprobs));
  }
  const int64_t position = request.state->memory->position();
  const auto needed = static_cast<int64_t>(request.input.size() + request.turn_end.size());
  if (request.max_context > 0 && position + needed > request.max_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input: ", request.input.size(), " tokens do not fit: the session holds ", position,
        " of at most ", request.max_context, " tokens"));
  }
  absl::StatusOr<Sampler> sampler = Sampler::Create(request.sampling);
  if (!sampler.ok()) return sampler.status();
  auto active = std::make_unique<Active>(std::move(request), std::move(sink), tokenizer_,
                                         *std::move(sampler));
  active->submitted = Clock::now();
  active->end.cached_tokens = position;
  active->end.prompt_tokens = static_cast<int64_t>(active->req.input.size());
  for (int32_t id : active->req.input) active->sampler.Observe(id);
  std::shared_ptr<Handle> handle = active->handle;
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the engine is shutting down");
  waiting_.push_back(std::move(active));
  return handle;
}

Engine::Stats Engine::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Engine::SetStepObserver(std::function<void(int64_t)> observer) {
  absl::MutexLock lock(&mu_);
  observer_ = std::move(observer);
}

void Engine::Loop() {
  for (;;) {
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      // Sleep until there is work (a short timeout re-checks cancellations).
      if (running_.empty()) {
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !waiting_.empty();
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
      }
      stopping = stopping_;
      if (stopping) {
        for (auto& a : waiting_) running_.push_back(std::move(a));
        waiting_.clear();
      }
    }
    if (stopping) {
      for (auto& a : running_) Finish(*a, StreamFinish::kCancelled);
      running_.clear();
      return;
    }
    Step();
  }
}

bool Engine::Step() {
  std::function<void(int64_t)> observer;
  {
    absl::MutexLock lock(&mu_);
    while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_batch) {
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    stats_.running = static_cast<int64_t>(running_.size());
    stats_.waiting = static_cast<int64_t>(waiting_.size());
    observer = observer_;
  }
  if (running_.empty()) return false;
  const Clock::time_point now = Clock::now();

  // Requests to advance by one token: (request, token).
  std::vector<std::pair<Active*, int32_t>> decodes;
  for (auto& ap : running_) {
    Active& a = *ap;
    if (a.started == Clock::time_point{}) {
      a.started = now;
      a.backup = a.req.state->memory->Clone();
      a.backup_logits = a.req.state->logits;
    }
    if (a.handle->cancelled() || now > a.req.deadline) {
      Finish(a, StreamFinish::kCancelled);
      continue;
    }
    model::Memory& memory = *a.req.state->memory;
    try {
      if (a.fed < a.req.input.size()) {  // prefill one chunk
        // At most prefill_chunk tokens per step, so a long prompt interleaves
        // with other sessions' decodes (recurrent layers continue their state
        // in parallel, so chunks give what one call gives).
        const size_t left = a.req.input.size() - a.fed;
        const size_t chunk = std::min<size_t>(
            left, static_cast<size_t>(std::max<int64_t>(1, options_.prefill_chunk)));
        const auto ids = std::span<const int32_t>(a.req.input).subspan(a.fed, chunk);
        absl::StatusOr<at::Tensor> logits =
            model_.Forward(Ids(ids), &memory, model::LlamaModel::Logits::kLast);
        if (!logits.ok()) {
          a.end.error = logits.status();
          Finish(a, StreamFinish::kError);
          continue;
        }
        a.req.state->logits = logits->view({-1});
        a.fed += chunk;
        if (a.fed == a.req.input.size()) a.prefilled = Clock::now();
        continue;
      }
      if (a.prefilled == Clock::time_point{}) a.prefilled = now;
      if (a.req.max_context > 0 && memory.position() >= a.req.max_context) {
        Finish(a, StreamFinish::kContextLimit);
        continue;
      }
      const at::Tensor& logits = a.req.state->logits;
      absl::StatusOr<int32_t> token = a.sampler.Sample(logits);
      if (!token.ok()) {
        a.end.error = token.status();
        Finish(a, StreamFinish::kError);
        continue;
      }
      const int32_t id = *token;
      a.sampler.Observe(id);
      StreamDelta delta;
      delta.ids.push_back(id);
      if (a.req.logprobs > 0) delta.logprobs.push_back(ComputeLogprobs(logits, id, a.req.logprobs));
      a.out.push_back(id);
      ++a.end.completion_tokens;
      std::optional<StreamFinish> finish;
      const bool stop_token = std::find(a.req.stop_token_ids.begin(), a.req.stop_token_ids.end(),
                                        id) != a.req.stop_token_ids.end();
      StopMatcher::Result text = a.stops.Push(a.decoder.Push(id));
      delta.text = std::move(text.emit);
      if (stop_token) {
        finish = StreamFinish::kStop;
        a.end.matched_stop = tokenizer_.Decode(std::span<const int32_t>(&id, 1), false);
      } else if (text.matched) {
        finish = StreamFinish::kStop;
        a.end.matched_stop = *text.matched;
      } else if (a.end.completion_tokens >= a.req.max_tokens) {
        finish = StreamFinish::kLength;
      }
      a.last_token = Clock::now();
      if (a.first_token == Clock::time_point{}) a.first_token = a.last_token;
      a.sink->OnDelta(std::move(delta));
      decodes.emplace_back(&a, id);
      if (finish) a.end.reason = *finish, a.done = true;  // finished after its token is fed
    } catch (const c10::Error& e) {
      a.end.error = absl::InternalError(e.what_without_backtrace());
      Finish(a, StreamFinish::kError);
    }
  }

  // Feed the sampled tokens: one batched forward when the model allows it.
  int64_t batched = 0;
  if (decodes.size() >= 2 && model_.recurrent()) {
    std::vector<int64_t> ids;
    std::vector<model::Memory*> memories;
    for (auto& [a, id] : decodes) {
      ids.push_back(id);
      memories.push_back(a->req.state->memory.get());
    }
    absl::StatusOr<at::Tensor> logits =
        model_.DecodeBatch(at::tensor(ids, at::TensorOptions().dtype(at::kLong)), memories);
    if (logits.ok()) {
      for (size_t j = 0; j < decodes.size(); ++j) {
        decodes[j].first->req.state->logits = (*logits)[static_cast<int64_t>(j)];
      }
      batched = static_cast<int64_t>(decodes.size());
      decodes.clear();
    }
    // On failure, fall through and feed one at a time (errors surface there).
  }
  for (auto& [a, id] : decodes) {
    absl::StatusOr<at::Tensor> logits = model_.Forward(
        Ids(std::span<const int32_t>(&id, 1)), a->req.state->memory.get(),
        model::LlamaModel::Logits::kLast);
    if (!logits.ok()) {
      a->end.error = logits.status();
      Finish(*a, StreamFinish::kError);
      continue;
    }
    a->req.state->logits = logits->view({-1});
  }
  for (auto& ap : running_) {
    if (ap->done && ap->sink != nullptr) Finish(*ap, ap->end.reason);
  }
  std::erase_if(running_, [](const auto& ap) { return ap->sink == nullptr; });
  {
    absl::MutexLock lock(&mu_);
    ++stats_.steps;
    if (batched >= 2) stats_.batched_decodes += batched;
    stats_.running = static_cast<int64_t>(running_.size());
  }
  if (observer && (batched > 0 || !decodes.empty())) {
    observer(batched > 0 ? batched : static_cast<int64_t>(decodes.size()));
  }
  return true;
}

// Ends a request: restores or completes the state, flushes held-back text,
// and sends OnEnd. Marks it finished by dropping its sink.
void Engine::Finish(Active& a, StreamFinish reason) {
  if (a.sink == nullptr) return;
  SessionState& state = *a.req.state;
  const bool nothing_streamed = a.out.empty();
  if (reason == StreamFinish::kError || (reason == StreamFinish::kCancelled && nothing_streamed)) {
    if (a.backup != nullptr) {
      state.memory = std::move(a.backup);
      state.logits = a.backup_logits;
    }
  } else if (!a.req.turn_end.empty()) {
    std::span<const int32_t> rest(a.req.turn_end);
    if (!a.out.empty() && a.out.back() == rest.front()) rest = rest.subspan(1);
    if (!rest.empty()) {
      absl::StatusOr<at::Tensor> logits =
          model_.Forward(Ids(rest), state.memory.get(), model::LlamaModel::Logits::kLast);
      if (logits.ok()) {
        state.logits = logits->view({-1});
      } else {
        reason = StreamFinish::kError;
        a.end.error = logits.status();
      }
    }
  }
  if (reason != StreamFinish::kError) {
    std::string tail = a.decoder.Flush();
    StopMatcher::Result r = a.stops.Push(tail);
    std::string text = r.emit + (r.matched ? "" : a.stops.Flush());
    if (!text.empty()) a.sink->OnDelta(StreamDelta{std::move(text), {}, {}});
  }
  a.end.reason = reason;
  a.end.tokens_seen = state.memory->position();
  const Clock::time_point now = Clock::now();
  a.end.queue_seconds = Seconds(a.submitted, a.started == Clock::time_point{} ? now : a.started);
  a.end.prefill_seconds = Seconds(a.started, a.prefilled);
  a.end.first_token_seconds = Seconds(a.submitted, a.first_token);
  a.end.decode_seconds = Seconds(a.first_token, a.last_token);
  a.backup.reset();
  std::shared_ptr<StreamSink> sink = std::move(a.sink);
  a.sink = nullptr;
  a.done = true;
  sink->OnEnd(std::move(a.end));
}

}  // namespace linearize::runtime
