#include "services/cli/generate_command.h"
#include "services/cli/inference_client.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model/load.h"
#include "common/runtime/generator.h"
#include "common/tokenizer/chat_template.h"

namespace linearize::cli {

CLI::App* AddGenerateCommand(CLI::App& app, GenerateArgs& args) {
  CLI::App* cmd = app.add_subcommand("generate", "Stream a continuation of a prompt");
  cmd->add_option("--model,-m", args.model,
                  "Model: a .gguf file or a Hugging Face directory (default: the embedded "
                  "SmolLM2-135M-Instruct)");
  cmd->add_option("--prompt,-p", args.prompt, "Prompt text")->required();
  cmd->add_flag("--chat", args.chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--system", args.system, "System message (with --chat)");
  cmd->add_option("--max-tokens,-n", args.max_tokens, "Most tokens to generate")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature,-t", args.temperature, "0 = greedy");
  cmd->add_option("--top-k", args.top_k, "Sample from the k most likely tokens (0 = all)");
  cmd->add_option("--top-p", args.top_p, "Nucleus sampling mass in (0, 1]");
  cmd->add_option("--seed", args.seed, "Random seed for sampling");
  cmd->add_flag("--stats", args.stats, "Print token counts and speed to stderr");
  cmd->add_option("--server", args.server,
                  "Generate on this linearize-inference address (--model: registry name or "
                  "path under its artifact root)");
  cmd->add_option("--token", args.token, "Bearer token for --server");
  return cmd;
}

absl::Status RunGenerate(const GenerateArgs& args) {
  if (!args.server.empty()) return RunRemoteGenerate(args, ServerArgs{args.server, args.token});
  std::string path = args.model;
  if (path.empty()) {
    absl::StatusOr<std::string> found = model::FindDefaultModel();
    if (!found.ok()) return found.status();
    path = *found;
  }
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(path);
  if (!loaded.ok()) return loaded.status();
  if (loaded->tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": has no tokenizer (tokenizer.json or tokenizer.model)"));
  }
  loaded->model->FuseProjections();  // generation only: one GEMM for q/k/v, one for gate/up

  std::string text = args.prompt;
  if (args.chat) {
    std::vector<tokenizer::ChatMessage> messages;
    if (!args.system.empty()) messages.push_back({"system", args.system});
    messages.push_back({"user", args.prompt});
    text = tokenizer::RenderChat(loaded->chat_format, messages, /*add_generation_prompt=*/true,
                                 loaded->default_system_prompt);
  }
  // Chat templates write BOS themselves, as apply_chat_template assumes.
  const std::vector<int32_t> prompt =
      loaded->tokenizer->Encode(text, /*add_special_tokens=*/!args.chat);
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt: encodes to no tokens");

  runtime::GenerateOptions options;
  options.max_new_tokens = args.max_tokens;
  options.stop_token_ids = model::StopTokenIds(*loaded);
  options.sampling.temperature = args.temperature;
  options.sampling.top_k = args.top_k;
  options.sampling.top_p = args.top_p;
  options.sampling.seed = args.seed;

  const runtime::Generator generator(*loaded->model, loaded->tokenizer.get());
  absl::StatusOr<runtime::GenerationResult> result = generator.Generate(
      prompt, options, /*memory=*/nullptr, [](int32_t, std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
      });
  if (!result.ok()) return result.status();
  std::fputc('\n', stdout);
  if (args.stats) {
    std::cerr << "[" << result->usage.prompt_tokens << " prompt tokens, "
              << result->usage.completion_tokens << " generated, finish="
              << runtime::FinishReasonName(result->finish_reason) << ", prefill "
              << result->timings.prefill_tokens_per_second << " tok/s, decode "
              << result->timings.decode_tokens_per_second << " tok/s]\n";
  }
  return absl::OkStatus();
}

}  // namespace linearize::cli
