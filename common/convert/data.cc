#include "common/convert/data.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/convert/fs_util.h"
#include "common/runtime/generator.h"
#include "common/tokenizer/chat_template.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

absl::Status ReadDocuments(const model::LoadedModel& teacher, const std::string& path,
                           std::vector<std::string>* docs) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  if (!absl::EndsWithIgnoreCase(path, ".jsonl")) {
    docs->push_back(*std::move(text));
    return absl::OkStatus();
  }
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const std::string where = absl::StrCat(path, ":", line_no);
    const nlohmann::json j = nlohmann::json::parse(std::string(line), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    if (j.contains("text") && j["text"].is_string()) {
      docs->push_back(j["text"].get<std::string>());
    } else if (j.contains("messages") && j["messages"].is_array()) {
      std::vector<tokenizer::ChatMessage> messages;
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
            !m.contains("content") || !m["content"].is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": each of \"messages\" must be an object with string role and content"));
        }
        messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
      docs->push_back(tokenizer::RenderChat(teacher.chat_format, messages,
                                            /*add_generation_prompt=*/false,
                                            teacher.default_system_prompt));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected a string field \"text\" or a list \"messages\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> FileTokens(const model::LoadedModel& teacher,
                                                const DataOptions& options) {
  if (teacher.tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the teacher ", teacher.path, " has no tokenizer to encode the data files"));
  }
  std::vector<std::string> docs;
  for (const std::string& file : options.files) {
    if (absl::Status s = ReadDocuments(teacher, file, &docs); !s.ok()) return s;
  }
  const std::optional<int32_t> eos = teacher.tokenizer->eos_id();
  std::vector<int32_t> stream;
  for (const std::string& doc : docs) {
    if (doc.empty()) continue;
    std::vector<int32_t> ids = teacher.tokenizer->Encode(doc, /*add_special_tokens=*/true);
    stream.insert(stream.end(), ids.begin(), ids.end());
    if (eos && (ids.empty() || ids.back() != *eos)) stream.push_back(*eos);
  }
  return stream;
}

absl::StatusOr<std::vector<int32_t>> SelfDistillTokens(const model::LoadedModel& teacher,
                                                       const DataOptions& options) {
  if (options.self_distill_sequences < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "self_distill_sequences must be >= 2, got ", options.self_distill_sequences));
  }
  runtime::Generator generator(*teacher.model, nullptr);
  int32_t start = 0;
  if (teacher.tokenizer != nullptr && teacher.tokenizer->bos_id()) {
    start = *teacher.tokenizer->bos_id();
  } else if (!teacher.config.bos_token_ids.empty()) {
    start = static_cast<int32_t>(teacher.config.bos_token_ids.front());
  }
  std::vector<int32_t> stream;
  for (int64_t i = 0; i < options.self_distill_sequences; ++i) {
    runtime::GenerateOptions g;
    g.max_new_tokens = options.seq_len - 1;
    g.sampling.temperature = 1.0;
    g.sampling.seed = options.seed * 7919 + static_cast<uint64_t>(i);
    const int32_t prompt[1] = {start};
    absl::StatusOr<runtime::GenerationResult> r = generator.Generate(prompt, g);
    if (!r.ok()) return r.status();
    std::vector<int32_t> seq = {start};
    seq.insert(seq.end(), r->token_ids.begin(), r->token_ids.end());
    seq.resize(static_cast<size_t>(options.seq_len), seq.back());  // exactly one sequence
    stream.insert(stream.end(), seq.begin(), seq.end());
  }
  return stream;
}

}  // namespace

absl::StatusOr<TokenData> BuildTokenData(const model::LoadedModel& teacher,
                                         const DataOptions& options) {
  if (options.seq_len < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be >= 2, got ", options.seq_len));
  }
  if (!(options.validation_fraction > 0 && options.validation_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "validation_fraction must be in (0, 1), got ", options.validation_fraction));
  }
  absl::StatusOr<std::vector<int32_t>> stream =
      options.files.empty() ? SelfDistillTokens(teacher, options) : FileTokens(teacher, options);
  if (!stream.ok()) return stream.status();
  const int64_t n = static_cast<int64_t>(stream->size()) / options.seq_len;
  const std::string what =
      options.files.empty() ? std::string("self-distillation data")
                            : absl::StrCat("the data (", absl::StrJoin(options.files, ", "), ")");
  if (stream->empty()) return absl::InvalidArgumentError(absl::StrCat(what, " holds no text"));
  if (n < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", stream->size(), " tokens, fewer than two sequences of seq_len ",
        options.seq_len, " (one to train, one to validate); give more text or a shorter seq_len"));
  }
  at::Tensor all = at::empty({n, options.seq_len}, at::kLong);
  int64_t* p = all.data_ptr<int64_t>();
  for (int64_t i = 0; i < n * options.seq_len; ++i) p[i] = (*stream)[static_cast<size_t>(i)];
  // Deterministic split: a seeded permutation, the first n_val go to validation.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(options.seed ^ 0x5eedda7aULL);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t n_val = std::clamp<int64_t>(
      static_cast<int64_t>(std::llround(options.validation_fraction * static_cast<double>(n))), 1,
      n - 1);
  std::vector<int64_t> val(order.begin(), order.begin() + n_val);
  std::vector<int64_t> train(order.begin() + n_val, order.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  TokenData out;
  out.train = all.index_select(0, at::tensor(train, at::kLong));
  out.validation = all.index_select(0, at::tensor(val, at::kLong));
  out.source = options.files.empty()
                   ? absl::StrCat("self-distillation: ", n, " sequences sampled from the teacher")
                   : absl::StrCat(options.files.size(), " file(s): ",
                                  absl::StrJoin(options.files, ", "));
  absl::StrAppend(&out.source, "; ", n, " sequences of ", options.seq_len, " tokens (",
                  n - n_val, " train, ", n_val, " validation)");
  return out;
}

}  // namespace linearize::convert
