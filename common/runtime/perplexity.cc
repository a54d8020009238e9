#include "common/runtime/perplexity.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace linearize::runtime {
namespace {

// Positions whose logits are materialised at once ([chunk, V] float32).
constexpr int64_t kLogitChunk = 256;

// After the checks; throws c10::Error.
absl::StatusOr<PerplexityResult> PerplexityUnchecked(const model::LlamaModel& model,
                                                     std::span<const int32_t> ids,
                                                     int64_t window, int64_t stride);

}  // namespace

absl::StatusOr<PerplexityResult> Perplexity(const model::LlamaModel& model,
                                            std::span<const int32_t> ids,
                                            const PerplexityOptions& options) {
  const auto n = static_cast<int64_t>(ids.size());
  if (n < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("perplexity needs at least 2 tokens, got ", n));
  }
  if (options.window < 0 || options.window == 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("window must be 0 (the model's context) or >= 2, got ", options.window));
  }
  const int64_t window =
      options.window > 0 ? options.window : model.config().max_position_embeddings;
  if (options.stride < 0 || options.stride >= window) {
    return absl::InvalidArgumentError(absl::StrCat("stride must be in [0, window - 1 = ",
                                                   window - 1, "], got ", options.stride));
  }
  const int64_t stride = options.stride > 0 ? options.stride : window - 1;

  try {
    return PerplexityUnchecked(model, ids, window, stride);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("perplexity failed: ", e.what_without_backtrace()));
  }
}

namespace {

absl::StatusOr<PerplexityResult> PerplexityUnchecked(const model::LlamaModel& model,
                                                     std::span<const int32_t> ids,
                                                     int64_t window, int64_t stride) {
  const auto n = static_cast<int64_t>(ids.size());
  // No autograd; not InferenceMode, whose tensors a Memory could not be
  // updated with afterwards outside it.
  at::NoGradGuard no_grad;
  at::Tensor all = at::empty({n}, at::kLong);
  std::copy(ids.begin(), ids.end(), all.data_ptr<int64_t>());
  PerplexityResult result;
  int64_t scored_until = 1;  // tokens [1, scored_until) have been scored
  while (scored_until < n) {
    // The first window is a whole one; later ones add `stride` targets.
    // stride < window keeps each target's predecessor inside the window.
    const int64_t end = std::min(std::max(scored_until + stride, window), n);
    const int64_t begin = std::max<int64_t>(0, end - window);
    absl::StatusOr<at::Tensor> hidden =
        model.ForwardHidden(all.slice(0, begin, end).unsqueeze(0));
    if (!hidden.ok()) return hidden.status();
    // Target j is predicted by the hidden state at j - 1.
    for (int64_t j = scored_until; j < end; j += kLogitChunk) {
      const int64_t stop = std::min(j + kLogitChunk, end);
      const at::Tensor logits =
          model.LmHead((*hidden)[0].slice(0, j - 1 - begin, stop - 1 - begin));
      const at::Tensor logp = at::log_softmax(logits.to(at::kDouble), -1);
      const at::Tensor targets = all.slice(0, j, stop).to(logp.device()).unsqueeze(1);
      result.nll_sum -= logp.gather(1, targets).sum().item<double>();
    }
    result.tokens_scored += end - scored_until;
    scored_until = end;
  }
  result.mean_nll = result.nll_sum / static_cast<double>(result.tokens_scored);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace

}  // namespace linearize::runtime
