#include "common/eval/speed.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/runtime/generator.h"

namespace linearize::eval {

absl::StatusOr<SpeedResult> MeasureSpeed(const model::LlamaModel& model,
                                         const SpeedOptions& options) {
  if (options.prompt_tokens < 1 || options.decode_tokens < 1 || options.repeats < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt_tokens, decode_tokens and repeats must be >= 1, got ", options.prompt_tokens,
        ", ", options.decode_tokens, ", ", options.repeats));
  }
  // Random ids above the usual special tokens.
  std::mt19937_64 rng(options.seed);
  const int64_t vocab = model.vocab_size();
  std::vector<int32_t> prompt(options.prompt_tokens);
  for (int32_t& id : prompt) id = static_cast<int32_t>(3 + rng() % (vocab - 3));

  runtime::GenerateOptions gen;
  gen.max_new_tokens = options.decode_tokens;
  const runtime::Generator generator(model, /*tokenizer=*/nullptr);
  std::vector<double> prefill, decode;
  for (int64_t r = 0; r < options.repeats; ++r) {
    absl::StatusOr<runtime::GenerationResult> out = generator.Generate(prompt, gen);
    if (!out.ok()) return out.status();
    prefill.push_back(out->timings.prefill_tokens_per_second);
    decode.push_back(out->timings.decode_tokens_per_second);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  SpeedResult s;
  s.prompt_tokens = options.prompt_tokens;
  s.decode_tokens = options.decode_tokens;
  s.threads = at::get_num_threads();
  s.prefill_tokens_per_second = median(prefill);
  s.decode_tokens_per_second = median(decode);
  return s;
}

}  // namespace linearize::eval
