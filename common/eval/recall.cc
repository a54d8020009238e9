#include "common/eval/recall.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/runtime/generator.h"

namespace linearize::eval {
namespace {

// One generator per sample: (seed, index) -> a stream. Draws use rng() % n
// rather than std::uniform_int_distribution, whose output is
// implementation-defined, so samples are the same with every library.
std::mt19937_64 SampleRng(uint64_t seed, int64_t index) {
  return std::mt19937_64(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1);
}

// `count` distinct elements of `from`, in random order (partial Fisher-Yates).
std::vector<int32_t> Distinct(std::vector<int32_t> from, int64_t count, std::mt19937_64& rng) {
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t j = i + rng() % (from.size() - i);
    std::swap(from[i], from[j]);
  }
  from.resize(count);
  return from;
}

bool IsWordToken(const std::string& bytes) {
  if (bytes.size() < 3 || bytes.size() > 9 || bytes[0] != ' ') return false;
  for (size_t i = 1; i < bytes.size(); ++i) {
    if (bytes[i] < 'a' || bytes[i] > 'z') return false;
  }
  return true;
}

}  // namespace

std::vector<int32_t> MqarTokenPool(const model::LlamaModel& model,
                                   const tokenizer::Tokenizer* tokenizer) {
  std::vector<int32_t> pool;
  const auto vocab = static_cast<int32_t>(model.vocab_size());
  if (tokenizer != nullptr) {
    const auto n = static_cast<int32_t>(std::min<int64_t>(vocab, tokenizer->vocab_size()));
    for (int32_t id = 0; id < n; ++id) {
      if (!tokenizer->IsSpecial(id) && IsWordToken(tokenizer->TokenBytes(id))) pool.push_back(id);
    }
    if (pool.size() >= 3 * 64) return pool;
    pool.clear();  // too few words: fall back to raw ids
  }
  for (int32_t id = 3; id < vocab; ++id) pool.push_back(id);
  return pool;
}

void SetMqarSeparators(const tokenizer::Tokenizer& tokenizer, MqarOptions* options) {
  const std::vector<int32_t> colon = tokenizer.Encode(":");
  const std::vector<int32_t> comma = tokenizer.Encode(",");
  if (colon.size() == 1) options->kv_separator = colon[0];
  if (comma.size() == 1) options->pair_separator = comma[0];
}

absl::StatusOr<MqarSample> MakeMqarSample(const MqarOptions& o, int64_t index) {
  const int64_t queries = o.num_queries == 0 ? o.num_pairs : o.num_queries;
  if (o.num_pairs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_pairs must be >= 1, got ", o.num_pairs));
  }
  if (queries < 1 || queries > o.num_pairs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_queries must be 0 or in [1, num_pairs = ", o.num_pairs, "], got ", o.num_queries));
  }
  const int64_t per_pair = 2 + (o.kv_separator ? 1 : 0) + (o.pair_separator ? 1 : 0);
  const int64_t need = per_pair * (o.num_pairs + queries) + (o.bos ? 1 : 0);
  if (need > o.context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "context_length ", o.context_length, " cannot hold ", o.num_pairs, " pairs and ",
        queries, " queries (", need, " tokens)"));
  }
  const auto third = static_cast<int64_t>(o.pool.size() / 3);
  if (third < o.num_pairs || third < 1) {
    return absl::InvalidArgumentError(absl::StrCat("pool of ", o.pool.size(),
                                                   " tokens is too small for ", o.num_pairs,
                                                   " pairs (needs 3 * num_pairs)"));
  }
  std::mt19937_64 rng = SampleRng(o.seed, index);
  const std::vector<int32_t> keys =
      Distinct({o.pool.begin(), o.pool.begin() + third}, o.num_pairs, rng);
  const std::vector<int32_t> values =
      Distinct({o.pool.begin() + third, o.pool.begin() + 2 * third}, o.num_pairs, rng);
  const std::vector<int32_t> filler(o.pool.begin() + 2 * third, o.pool.end());

  MqarSample s;
  s.ids.reserve(o.context_length);
  if (o.bos) s.ids.push_back(*o.bos);
  auto push_pair = [&](int32_t key, int32_t value, bool query) {
    s.ids.push_back(key);
    if (o.kv_separator) s.ids.push_back(*o.kv_separator);
    if (query) {
      s.query_positions.push_back(static_cast<int64_t>(s.ids.size()) - 1);
      s.answers.push_back(value);
    }
    s.ids.push_back(value);
    if (o.pair_separator) s.ids.push_back(*o.pair_separator);
  };
  for (int64_t i = 0; i < o.num_pairs; ++i) push_pair(keys[i], values[i], false);
  const int64_t filler_end = o.context_length - per_pair * queries;
  while (static_cast<int64_t>(s.ids.size()) < filler_end) {
    s.ids.push_back(filler[rng() % filler.size()]);
  }
  // Which pairs are queried, in random order.
  std::vector<int32_t> order(o.num_pairs);
  for (int64_t i = 0; i < o.num_pairs; ++i) order[i] = static_cast<int32_t>(i);
  order = Distinct(order, queries, rng);
  for (int32_t pair : order) push_pair(keys[pair], values[pair], true);
  return s;
}

int64_t RecallContextLimit(const model::LlamaModel& model) {
  return model.recurrent() ? std::numeric_limits<int64_t>::max()
                           : model.config().max_position_embeddings;
}

absl::StatusOr<RecallResult> EvaluateMqar(const model::LlamaModel& model,
                                          const MqarOptions& options) {
  if (options.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", options.num_samples));
  }
  if (options.context_length > RecallContextLimit(model)) {
    return absl::InvalidArgumentError(
        absl::StrCat("context_length ", options.context_length, " exceeds the model's context ",
                     RecallContextLimit(model)));
  }
  RecallResult r;
  r.context_length = options.context_length;
  r.num_pairs = options.num_pairs;
  try {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < options.num_samples; ++i) {
      absl::StatusOr<MqarSample> s = MakeMqarSample(options, i);
      if (!s.ok()) return s.status();
      at::Tensor ids = at::empty({1, static_cast<int64_t>(s->ids.size())}, at::kLong);
      std::copy(s->ids.begin(), s->ids.end(), ids.data_ptr<int64_t>());
      absl::StatusOr<at::Tensor> hidden = model.ForwardHidden(ids);
      if (!hidden.ok()) return hidden.status();
      at::Tensor pos = at::tensor(s->query_positions, at::kLong).to(hidden->device());
      const at::Tensor guess =
          model.LmHead((*hidden)[0].index_select(0, pos)).argmax(-1).cpu().contiguous();
      for (size_t q = 0; q < s->answers.size(); ++q) {
        r.correct += guess.data_ptr<int64_t>()[q] == s->answers[q];
        ++r.trials;
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("MQAR failed: ", e.what_without_backtrace()));
  }
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.trials);
  return r;
}

namespace {

constexpr std::string_view kIntro =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "it. I will quiz you about the important information there.";
constexpr std::string_view kFiller =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
constexpr std::string_view kQuestion = " What is the pass key? The pass key is";

}  // namespace

std::string FirstNumber(std::string_view text) {
  size_t b = 0;
  while (b < text.size() && !std::isdigit(static_cast<unsigned char>(text[b]))) ++b;
  size_t e = b;
  while (e < text.size() && std::isdigit(static_cast<unsigned char>(text[e]))) ++e;
  return std::string(text.substr(b, e - b));
}

absl::StatusOr<PasskeySample> MakePasskeySample(const tokenizer::Tokenizer& tokenizer,
                                                const PasskeyOptions& o, int64_t index) {
  if (o.depth < 0 || o.depth > 1) {
    return absl::InvalidArgumentError(absl::StrCat("depth must be in [0, 1], got ", o.depth));
  }
  std::mt19937_64 rng = SampleRng(o.seed, index);
  PasskeySample s;
  s.passkey = std::to_string(10000 + rng() % 90000);
  const std::string needle = absl::StrCat(" The pass key is ", s.passkey, ". Remember it. ",
                                          s.passkey, " is the pass key.");
  // Pieces are encoded apart and joined as ids; each starts with a space,
  // so the joins fall on word boundaries.
  const std::vector<int32_t> intro = tokenizer.Encode(kIntro, /*add_special_tokens=*/true);
  const std::vector<int32_t> filler = tokenizer.Encode(kFiller);
  const std::vector<int32_t> needle_ids = tokenizer.Encode(needle);
  const std::vector<int32_t> question = tokenizer.Encode(kQuestion);
  const auto fixed =
      static_cast<int64_t>(intro.size() + needle_ids.size() + question.size());
  const int64_t repeats =
      std::max<int64_t>(1, (o.length - fixed) / static_cast<int64_t>(filler.size()));
  const auto needle_at = static_cast<int64_t>(o.depth * static_cast<double>(repeats) + 0.5);
  s.ids = intro;
  for (int64_t r = 0; r <= repeats; ++r) {
    if (r == needle_at) s.ids.insert(s.ids.end(), needle_ids.begin(), needle_ids.end());
    if (r < repeats) s.ids.insert(s.ids.end(), filler.begin(), filler.end());
  }
  s.ids.insert(s.ids.end(), question.begin(), question.end());
  return s;
}

absl::StatusOr<RecallResult> EvaluatePasskey(const model::LlamaModel& model,
                                             const tokenizer::Tokenizer& tokenizer,
                                             const PasskeyOptions& options) {
  if (options.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", options.num_samples));
  }
  const int64_t context = RecallContextLimit(model);
  RecallResult r;
  r.depth = options.depth;
  runtime::GenerateOptions gen;
  gen.max_new_tokens = options.max_new_tokens;
  gen.max_context = context;
  const runtime::Generator generator(model, &tokenizer);
  for (int64_t i = 0; i < options.num_samples; ++i) {
    absl::StatusOr<PasskeySample> s = MakePasskeySample(tokenizer, options, i);
    if (!s.ok()) return s.status();
    const auto len = static_cast<int64_t>(s->ids.size());
    if (len + options.max_new_tokens > context) {
      return absl::InvalidArgumentError(absl::StrCat("passkey prompt of ", len, " tokens plus ",
                                                     options.max_new_tokens,
                                                     " new tokens exceeds the model's context ",
                                                     context));
    }
    r.context_length = std::max(r.context_length, len);
    absl::StatusOr<runtime::GenerationResult> out = generator.Generate(s->ids, gen);
    if (!out.ok()) return out.status();
    r.correct += FirstNumber(out->text) == s->passkey;
    ++r.trials;
  }
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.trials);
  return r;
}

}  // namespace linearize::eval
