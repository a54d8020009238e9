// Multiple choice by log-likelihood, as lm-evaluation-harness scores its
// multiple_choice tasks: each choice is the continuation " " + choice of the
// prompt, its score the sum of its tokens' log-probabilities; acc picks the
// highest sum, acc_norm the highest sum per UTF-8 byte of the choice.
//
// Task files are JSONL, one question per line, in either form:
//   {"context": "Question: 2 + 3 =\nAnswer:", "choices": ["5", "6"], "gold": 0}
//   {"question": "...", "A": "..", "B": "..", "C": "..", "D": "..", "answer": "B"}
// (MMLU; "choices": [4 strings] may replace A-D, "answer" may be 0-3). An
// MMLU question is rendered as the harness's mmlu prompt:
//   "<question>\nA. <A>\nB. <B>\nC. <C>\nD. <D>\nAnswer:" with choices A-D.
// Blank lines are skipped. MMLU's own CSV files (no header; question, A, B,
// C, D, answer letter; RFC 4180 quoting) are read when the name ends in
// .csv; their task gets the harness's description, "The following are
// multiple choice questions (with answers) about <subject>.\n\n", the
// subject being the file stem without _test/_dev/_val, "_" as spaces.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/tokenizer/tokenizer.h"

namespace linearize::eval {

struct McQuestion {
  std::string context;               // the prompt, ending before " " + choice
  std::vector<std::string> choices;  // >= 2
  int64_t gold = 0;
};

struct McTask {
  std::string name;         // the file's stem
  std::string description;  // put before every prompt ("" for none)
  std::vector<McQuestion> questions;
};

// Errors name the file and the 1-based line: bad JSON, missing or mistyped
// fields, fewer than 2 choices, gold out of range.
absl::StatusOr<McTask> ParseMcTask(std::string_view text, std::string_view filename);
// MMLU CSV; errors name the file and the 1-based line where the record starts.
absl::StatusOr<McTask> ParseMmluCsv(std::string_view text, std::string_view filename);
// By extension: .csv is MMLU CSV, anything else JSONL.
absl::StatusOr<McTask> LoadMcTask(const std::string& path);

struct McOptions {
  int64_t num_fewshot = 0;  // examples from the same task put before each question
  uint64_t seed = 1234;     // which examples (deterministic per question)
  int64_t limit = 0;        // score the first `limit` questions; 0: all
};

// The prompt for question `index`: the task's description, then k other questions of the task, each
// "context + ' ' + gold choice", joined and followed by the question's
// context with "\n\n" (the harness's fewshot delimiter).
std::string McPrompt(const McTask& task, int64_t index, const McOptions& options);

struct McQuestionScore {
  std::vector<double> loglik;  // per choice
  int64_t pred = 0;            // argmax loglik
  int64_t pred_norm = 0;       // argmax loglik / bytes(choice)
};

struct McResult {
  std::string task;
  int64_t num_fewshot = 0;
  int64_t questions = 0;
  double acc = 0;
  double acc_norm = 0;
  std::vector<McQuestionScore> scores;
};

// Log-likelihood of `continuation` after `context`, split as the harness
// does: whole = Encode(context + continuation), the continuation tokens are
// whole[len(Encode(context)):], the context tokens Encode(context) (with the
// tokenizer's BOS when it adds one; an empty context becomes BOS/EOS).
absl::StatusOr<double> ContinuationLogLikelihood(const model::LlamaModel& model,
                                                 const tokenizer::Tokenizer& tokenizer,
                                                 const std::string& context,
                                                 const std::string& continuation);

// Each question's choices are scored together, as one batch of
// right-padded rows (causal attention keeps the padding out of the scores).
absl::StatusOr<McResult> EvaluateMc(const model::LlamaModel& model,
                                    const tokenizer::Tokenizer& tokenizer, const McTask& task,
                                    const McOptions& options = {});

}  // namespace linearize::eval
