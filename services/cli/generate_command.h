// `linearize generate`: load a model (the embedded default unless --model
// names one) and stream a continuation of --prompt to stdout.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace CLI { class App; }

namespace linearize::cli {

struct GenerateArgs {
  std::string model;   // "" = the embedded default
  std::string prompt;
  std::string system;  // chat only; "" = the template's default
  bool chat = false;   // wrap the prompt in the model's chat template
  int64_t max_tokens = 128;
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  bool stats = false;  // print token counts and speed to stderr
  std::string server;  // generate on this inference service instead of locally
  std::string token;   // its bearer token
};

// Registers the subcommand; `args` must outlive parsing and the run.
CLI::App* AddGenerateCommand(CLI::App& app, GenerateArgs& args);
absl::Status RunGenerate(const GenerateArgs& args);

}  // namespace linearize::cli
