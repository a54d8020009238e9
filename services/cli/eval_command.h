// `linearize eval`: evaluate a model (and optionally its teacher on the same
// tasks) with the evaluation library and write report.json, report.md and
// PNG plots to --out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace CLI { class App; }

namespace linearize::cli {

struct EvalArgs {
  std::string model;    // "" = the embedded default
  std::string teacher;  // "" = none
  std::vector<std::string> tasks = {"ppl", "recall", "mc", "speed"};
  std::string out = "eval_out";
  std::vector<std::string> texts;     // "" = tests/fixtures/text/english.txt
  std::vector<std::string> mc_files;  // "" = the shipped tasks
  int64_t fewshot = 0;
  int64_t mc_limit = 0;
  int64_t chunk = 1024;  // perplexity curve / KL chunk (capped at the context)
  int64_t bucket = 64;
  std::vector<int64_t> recall_lengths = {128, 256, 512, 1024};
  std::vector<int64_t> recall_pairs = {4, 16};
  int64_t recall_samples = 8;
  std::vector<int64_t> passkey_lengths = {1024, 2048, 4096};
  std::vector<double> passkey_depths = {0.5};
  int64_t passkey_samples = 2;
  int64_t speed_prompt = 128;
  int64_t speed_decode = 32;
  uint64_t seed = 0;
  // LABEL=PATH: join earlier runs' report.json (PATH or PATH/report.json)
  // into one report instead of evaluating.
  std::vector<std::string> merge;
  // Non-empty: run the tasks on linearize-evaluator at this address instead
  // (MODEL, --teacher, --text and --mc-tasks are paths under its artifact root).
  std::string server;
  std::string token;   // bearer token ($LINEARIZE_TOKEN)
  std::string tls_ca;  // PEM CA of the server's certificate: use TLS
};

// Registers the subcommand; `args` must outlive parsing and the run.
CLI::App* AddEvalCommand(CLI::App& app, EvalArgs& args);
absl::Status RunEval(const EvalArgs& args);

}  // namespace linearize::cli
