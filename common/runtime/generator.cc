#include "common/runtime/generator.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"

namespace linearize::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

at::Tensor IdsTensor(std::span<const int32_t> ids) {
  at::Tensor t = at::empty({1, static_cast<int64_t>(ids.size())}, at::kLong);
  int64_t* p = t.data_ptr<int64_t>();
  for (size_t i = 0; i < ids.size(); ++i) p[i] = ids[i];
  return t;
}

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

absl::StatusOr<GenerationResult> Generator::Generate(std::span<const int32_t> prompt,
                                                     const GenerateOptions& options,
                                                     model::Memory* memory,
                                                     const TokenCallback& on_token) const {
  try {
    return GenerateUnchecked(prompt, options, memory, on_token);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("generation failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<GenerationResult> Generator::GenerateUnchecked(
    std::span<const int32_t> prompt, const GenerateOptions& options, model::Memory* memory,
    const TokenCallback& on_token) const {
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", options.max_new_tokens));
  }
  if (options.max_context < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_context must be >= 0, got ", options.max_context));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("prompt must hold at least one token");
  absl::StatusOr<Sampler> sampler = Sampler::Create(options.sampling);
  if (!sampler.ok()) return sampler.status();
  if (memory != nullptr && memory->batch() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the memory holds ", memory->batch(), " sequences; generation needs 1"));
  }
  const int64_t max_context =
      options.max_context > 0 ? options.max_context : model_.config().max_position_embeddings;
  const int64_t past = memory != nullptr ? memory->position() : 0;
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  if (past + prompt_len > max_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt of ", prompt_len, " tokens", past > 0 ? absl::StrCat(" after ", past,
                                                                         " earlier tokens")
                                                          : std::string(),
        " does not fit the context of ", max_context, " tokens"));
  }

  // No autograd; not InferenceMode, whose tensors a Memory could not be
  // updated with afterwards outside it.
  at::NoGradGuard no_grad;
  std::unique_ptr<model::Memory> owned;
  if (memory == nullptr) {
    owned = model_.NewMemory(1, std::min(max_context, prompt_len + options.max_new_tokens));
    memory = owned.get();
  }
  GenerationResult result;
  result.usage.prompt_tokens = prompt_len;
  std::optional<tokenizer::StreamDecoder> stream;
  if (tokenizer_ != nullptr) stream.emplace(*tokenizer_);

  const Clock::time_point start = Clock::now();
  absl::StatusOr<at::Tensor> logits =
      model_.Forward(IdsTensor(prompt), memory, model::LlamaModel::Logits::kLast);
  if (!logits.ok()) return logits.status();
  Clock::time_point prefill_end{};
  int64_t decode_steps = 0;
  result.finish_reason = FinishReason::kLength;
  while (static_cast<int64_t>(result.token_ids.size()) < options.max_new_tokens) {
    absl::StatusOr<int32_t> next = sampler->Sample((*logits)[0][-1]);
    if (!next.ok()) return next.status();
    if (prefill_end == Clock::time_point{}) prefill_end = Clock::now();
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), *next) !=
        options.stop_token_ids.end()) {
      result.finish_reason = FinishReason::kStop;
      result.stop_token = *next;
      break;
    }
    result.token_ids.push_back(*next);
    const std::string piece = stream ? stream->Push(*next) : std::string();
    result.text += piece;
    if (on_token && !on_token(*next, piece)) {
      result.finish_reason = FinishReason::kCancelled;
      break;
    }
    if (static_cast<int64_t>(result.token_ids.size()) >= options.max_new_tokens) break;
    if (memory->position() >= max_context) break;  // no room to feed the token back
    const int32_t fed = *next;
    logits = model_.Forward(IdsTensor({&fed, 1}), memory, model::LlamaModel::Logits::kLast);
    if (!logits.ok()) return logits.status();
    ++decode_steps;
  }
  // A caller's memory gets the last token too, so that it holds exactly the
  // prompt and token_ids; a throwaway memory need not.
  const int64_t held = past + prompt_len + static_cast<int64_t>(result.token_ids.size());
  if (owned == nullptr && memory->position() + 1 == held && held <= max_context) {
    const int32_t last = result.token_ids.back();
    absl::StatusOr<at::Tensor> ignored =
        model_.Forward(IdsTensor({&last, 1}), memory, model::LlamaModel::Logits::kLast);
    if (!ignored.ok()) return ignored.status();
  }
  const Clock::time_point end = Clock::now();
  if (prefill_end == Clock::time_point{}) prefill_end = end;  // max_new_tokens 0

  if (stream) {
    const std::string rest = stream->Flush();
    if (!rest.empty()) {
      result.text += rest;
      if (on_token) on_token(-1, rest);
    }
  }
  result.usage.completion_tokens = static_cast<int64_t>(result.token_ids.size());
  Timings& t = result.timings;
  t.prefill_seconds = Seconds(start, prefill_end);
  t.decode_seconds = Seconds(prefill_end, end);
  if (t.prefill_seconds > 0) t.prefill_tokens_per_second = prompt_len / t.prefill_seconds;
  if (t.decode_seconds > 0 && decode_steps > 0) {
    t.decode_tokens_per_second = decode_steps / t.decode_seconds;
  }
  return result;
}

}  // namespace linearize::runtime
