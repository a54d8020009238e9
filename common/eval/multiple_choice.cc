#include "common/eval/multiple_choice.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace linearize::eval {
namespace {

using Json = nlohmann::json;

absl::Status LineError(std::string_view file, int64_t line, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(file), ":", line, ": ", std::string(what)));
}

std::string Stem(std::string_view path) {
  const size_t slash = path.find_last_of('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find_last_of('.');
  return std::string(dot == std::string_view::npos ? name : name.substr(0, dot));
}

// One JSON object -> a question; "" on success, else what is wrong.
std::string ParseQuestion(const Json& j, McQuestion* q) {
  if (!j.is_object()) return "expected a JSON object";
  if (j.contains("context")) {
    if (!j["context"].is_string()) return "\"context\" must be a string";
    q->context = j["context"].get<std::string>();
    if (!j.contains("choices") || !j["choices"].is_array()) return "\"choices\" must be an array";
    for (const Json& c : j["choices"]) {
      if (!c.is_string()) return "\"choices\" must hold strings";
      q->choices.push_back(c.get<std::string>());
    }
    if (q->choices.size() < 2) return "\"choices\" needs at least 2 entries";
    if (!j.contains("gold") || !j["gold"].is_number_integer()) return "\"gold\" must be an integer";
    q->gold = j["gold"].get<int64_t>();
    if (q->gold < 0 || q->gold >= static_cast<int64_t>(q->choices.size())) {
      return absl::StrCat("\"gold\" ", q->gold, " is outside [0, ", q->choices.size(), ")");
    }
    return "";
  }
  if (j.contains("question")) {  // MMLU
    if (!j["question"].is_string()) return "\"question\" must be a string";
    std::vector<std::string> options;
    if (j.contains("choices")) {
      if (!j["choices"].is_array() || j["choices"].size() != 4) {
        return "\"choices\" must be an array of 4 strings";
      }
      for (const Json& c : j["choices"]) {
        if (!c.is_string()) return "\"choices\" must be an array of 4 strings";
        options.push_back(c.get<std::string>());
      }
    } else {
      for (const char* key : {"A", "B", "C", "D"}) {
        if (!j.contains(key) || !j[key].is_string()) {
          return absl::StrCat("\"", key, "\" must be a string");
        }
        options.push_back(j[key].get<std::string>());
      }
    }
    if (!j.contains("answer")) return "missing \"answer\"";
    const Json& a = j["answer"];
    if (a.is_number_integer()) {
      q->gold = a.get<int64_t>();
    } else if (a.is_string() && a.get<std::string>().size() == 1) {
      q->gold = a.get<std::string>()[0] - 'A';
    } else {
      return "\"answer\" must be a letter A-D or an index 0-3";
    }
    if (q->gold < 0 || q->gold > 3) return "\"answer\" must be a letter A-D or an index 0-3";
    q->context = j["question"].get<std::string>();
    const char* letters[] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; ++i) absl::StrAppend(&q->context, "\n", letters[i], ". ", options[i]);
    absl::StrAppend(&q->context, "\nAnswer:");
    q->choices = {"A", "B", "C", "D"};
    return "";
  }
  return "expected \"context\"/\"choices\"/\"gold\" or MMLU \"question\"/\"A\"-\"D\"/\"answer\"";
}

}  // namespace

absl::StatusOr<McTask> ParseMcTask(std::string_view text, std::string_view filename) {
  McTask task;
  task.name = Stem(filename);
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return LineError(filename, line_no, "invalid JSON");
    McQuestion q;
    const std::string err = ParseQuestion(j, &q);
    if (!err.empty()) return LineError(filename, line_no, err);
    task.questions.push_back(std::move(q));
  }
  if (task.questions.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(filename), ": no questions"));
  }
  return task;
}

absl::StatusOr<McTask> ParseMmluCsv(std::string_view text, std::string_view filename) {
  McTask task;
  task.name = Stem(filename);
  std::string subject = task.name;
  for (const char* suffix : {"_test", "_dev", "_val"}) {
    if (subject.ends_with(suffix)) subject.resize(subject.size() - std::strlen(suffix));
  }
  std::replace(subject.begin(), subject.end(), '_', ' ');
  task.description = absl::StrCat(
      "The following are multiple choice questions (with answers) about ", subject, ".\n\n");
  int64_t line = 1;
  size_t i = 0;
  while (i < text.size()) {
    const int64_t record_line = line;
    std::vector<std::string> fields(1);
    bool quoted = false, end_of_record = false;
    for (; i < text.size() && !end_of_record; ++i) {
      const char c = text[i];
      if (quoted) {
        if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
          fields.back() += '"';
          ++i;
        } else if (c == '"') {
          quoted = false;
        } else {
          if (c == '\n') ++line;
          fields.back() += c;
        }
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',') {
        fields.emplace_back();
      } else if (c == '\n') {
        ++line;
        end_of_record = true;
      } else if (c != '\r') {
        fields.back() += c;
      }
    }
    if (quoted) return LineError(filename, record_line, "unterminated quoted field");
    if (fields.size() == 1 && fields[0].empty()) continue;  // blank line
    if (fields.size() != 6) {
      return LineError(filename, record_line,
                       absl::StrCat("expected 6 fields (question, A, B, C, D, answer), got ",
                                    fields.size()));
    }
    McQuestion q;
    const Json j = {{"question", fields[0]}, {"A", fields[1]}, {"B", fields[2]},
                    {"C", fields[3]},        {"D", fields[4]}, {"answer", fields[5]}};
    const std::string err = ParseQuestion(j, &q);
    if (!err.empty()) return LineError(filename, record_line, err);
    task.questions.push_back(std::move(q));
  }
  if (task.questions.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(filename), ": no questions"));
  }
  return task;
}

absl::StatusOr<McTask> LoadMcTask(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (path.ends_with(".csv")) return ParseMmluCsv(text.str(), path);
  return ParseMcTask(text.str(), path);
}

std::string McPrompt(const McTask& task, int64_t index, const McOptions& options) {
  const auto n = static_cast<int64_t>(task.questions.size());
  const int64_t k = std::min(options.num_fewshot, n - 1);
  std::string prompt = task.description;
  if (k > 0) {
    // k distinct other questions, by a generator seeded with (seed, index).
    std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index));
    std::vector<int64_t> others;
    for (int64_t i = 0; i < n; ++i) {
      if (i != index) others.push_back(i);
    }
    for (int64_t i = 0; i < k; ++i) {
      std::swap(others[i], others[i + rng() % (others.size() - i)]);
      const McQuestion& ex = task.questions[others[i]];
      absl::StrAppend(&prompt, ex.context, " ", ex.choices[ex.gold], "\n\n");
    }
  }
  absl::StrAppend(&prompt, task.questions[index].context);
  return prompt;
}

namespace {

// One scored row: the model's input ids and how many of the last are the
// continuation.
struct ScoredInput {
  std::vector<int64_t> ids;
  int64_t n_cont = 0;
};

absl::StatusOr<ScoredInput> ContinuationInput(const model::LlamaModel& model,
                                              const tokenizer::Tokenizer& tokenizer,
                                              const std::string& context_in,
                                              const std::string& continuation_in) {
  // The harness moves trailing spaces of the context to the continuation.
  std::string context = context_in;
  std::string continuation = continuation_in;
  const size_t keep = context.find_last_not_of(' ') + 1;  // npos + 1 == 0
  continuation = context.substr(keep) + continuation;
  context.resize(keep);

  std::vector<int32_t> ctx = tokenizer.Encode(context, /*add_special_tokens=*/true);
  const std::vector<int32_t> whole =
      tokenizer.Encode(context + continuation, /*add_special_tokens=*/true);
  if (whole.size() <= ctx.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("continuation \"", continuation_in, "\" encodes to no tokens"));
  }
  std::vector<int32_t> cont(whole.begin() + static_cast<int64_t>(ctx.size()), whole.end());
  if (ctx.empty()) {
    const std::optional<int32_t> start =
        tokenizer.bos_id() ? tokenizer.bos_id() : tokenizer.eos_id();
    if (!start) return absl::InvalidArgumentError("empty context and no BOS/EOS token");
    ctx.push_back(*start);
  }
  ScoredInput in;
  in.ids.assign(ctx.begin(), ctx.end());
  in.ids.insert(in.ids.end(), cont.begin(), cont.end());
  in.n_cont = static_cast<int64_t>(cont.size());
  // Too long: keep the most recent tokens, as the harness truncates left.
  const int64_t context_limit = model.config().max_position_embeddings;
  if (in.n_cont >= context_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("continuation of ", in.n_cont, " tokens does not fit the model's context"));
  }
  if (static_cast<int64_t>(in.ids.size()) > context_limit) {
    in.ids.erase(in.ids.begin(), in.ids.end() - context_limit);
  }
  return in;
}

// The continuations' log-likelihoods from one batched forward: rows are
// right-padded to the longest (with their own last token), and since every
// attention here is causal the padding never reaches the scored positions.
absl::StatusOr<std::vector<double>> ScoreContinuations(const model::LlamaModel& model,
                                                       const std::vector<ScoredInput>& rows) {
  size_t longest = 0;
  for (const ScoredInput& r : rows) longest = std::max(longest, r.ids.size());
  try {
    at::NoGradGuard no_grad;
    at::Tensor input = at::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)},
                                 at::kLong);
    for (size_t b = 0; b < rows.size(); ++b) {
      std::vector<int64_t> padded = rows[b].ids;
      padded.resize(longest, rows[b].ids.back());
      input[static_cast<int64_t>(b)].copy_(at::tensor(padded, at::kLong));
    }
    absl::StatusOr<at::Tensor> hidden = model.ForwardHidden(input);
    if (!hidden.ok()) return hidden.status();
    std::vector<double> out;
    for (size_t b = 0; b < rows.size(); ++b) {
      const auto n = static_cast<int64_t>(rows[b].ids.size());
      const int64_t n_cont = rows[b].n_cont;
      // Continuation token i sits at n - n_cont + i, predicted from the one before.
      const at::Tensor row = (*hidden)[static_cast<int64_t>(b)];
      const at::Tensor logits = model.LmHead(row.slice(0, n - n_cont - 1, n - 1));
      const at::Tensor logp = at::log_softmax(logits.to(at::kDouble), -1).cpu();
      const at::Tensor targets = input[static_cast<int64_t>(b)].slice(0, n - n_cont, n).unsqueeze(1);
      out.push_back(logp.gather(1, targets).sum().item<double>());
    }
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("log-likelihood failed: ", e.what_without_backtrace()));
  }
}

}  // namespace

absl::StatusOr<double> ContinuationLogLikelihood(const model::LlamaModel& model,
                                                 const tokenizer::Tokenizer& tokenizer,
                                                 const std::string& context,
                                                 const std::string& continuation) {
  absl::StatusOr<ScoredInput> in = ContinuationInput(model, tokenizer, context, continuation);
  if (!in.ok()) return in.status();
  absl::StatusOr<std::vector<double>> ll = ScoreContinuations(model, {*std::move(in)});
  if (!ll.ok()) return ll.status();
  return ll->front();
}

absl::StatusOr<McResult> EvaluateMc(const model::LlamaModel& model,
                                    const tokenizer::Tokenizer& tokenizer, const McTask& task,
                                    const McOptions& options) {
  if (options.num_fewshot < 0 || options.limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_fewshot and limit must be >= 0, got ", options.num_fewshot, ", ", options.limit));
  }
  McResult r;
  r.task = task.name;
  r.num_fewshot = options.num_fewshot;
  const auto n = static_cast<int64_t>(task.questions.size());
  const int64_t count = options.limit > 0 ? std::min(options.limit, n) : n;
  int64_t correct = 0, correct_norm = 0;
  for (int64_t i = 0; i < count; ++i) {
    const McQuestion& q = task.questions[i];
    const std::string prompt = McPrompt(task, i, options);
    McQuestionScore s;
    // Every choice of a question in one batched forward.
    std::vector<ScoredInput> rows;
    for (const std::string& choice : q.choices) {
      absl::StatusOr<ScoredInput> in = ContinuationInput(model, tokenizer, prompt, " " + choice);
      if (!in.ok()) {
        return absl::Status(in.status().code(), absl::StrCat(task.name, " question ", i + 1,
                                                             ": ", in.status().message()));
      }
      rows.push_back(*std::move(in));
    }
    absl::StatusOr<std::vector<double>> ll = ScoreContinuations(model, rows);
    if (!ll.ok()) {
      return absl::Status(ll.status().code(), absl::StrCat(task.name, " question ", i + 1, ": ",
                                                           ll.status().message()));
    }
    s.loglik = *std::move(ll);
    double best = -INFINITY, best_norm = -INFINITY;
    for (size_t c = 0; c < q.choices.size(); ++c) {
      const double norm =
          s.loglik[c] / static_cast<double>(std::max<size_t>(1, q.choices[c].size()));
      if (s.loglik[c] > best) {
        best = s.loglik[c];
        s.pred = static_cast<int64_t>(c);
      }
      if (norm > best_norm) {
        best_norm = norm;
        s.pred_norm = static_cast<int64_t>(c);
      }
    }
    correct += s.pred == q.gold;
    correct_norm += s.pred_norm == q.gold;
    r.scores.push_back(std::move(s));
  }
  r.questions = count;
  r.acc = static_cast<double>(correct) / static_cast<double>(count);
  r.acc_norm = static_cast<double>(correct_norm) / static_cast<double>(count);
  return r;
}

}  // namespace linearize::eval
