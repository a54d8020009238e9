// `linearize`: the command-line client.
#include <CLI/CLI.hpp>

#include <iostream>

#include "services/cli/convert_command.h"
#include "services/cli/eval_command.h"
#include "services/cli/generate_command.h"
#include "services/cli/inference_client.h"
#include "services/cli/job_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"linearize: convert Transformer LLMs to linear attention and serve them"};
  app.require_subcommand(1);
  linearize::cli::GenerateArgs generate_args;
  CLI::App* generate = linearize::cli::AddGenerateCommand(app, generate_args);
  linearize::cli::EvalArgs eval_args;
  CLI::App* eval = linearize::cli::AddEvalCommand(app, eval_args);
  linearize::cli::ConvertArgs convert_args;
  CLI::App* convert = linearize::cli::AddConvertCommand(app, convert_args);
  linearize::cli::ChatArgs chat_args;
  CLI::App* chat = linearize::cli::AddChatCommand(app, chat_args);
  linearize::cli::JobCommandArgs job_args;
  const auto job_commands = linearize::cli::AddJobCommands(app, job_args);
  CLI11_PARSE(app, argc, argv);

  absl::Status status;
  if (generate->parsed()) status = linearize::cli::RunGenerate(generate_args);
  if (eval->parsed()) status = linearize::cli::RunEval(eval_args);
  if (convert->parsed()) status = linearize::cli::RunConvert(convert_args);
  if (chat->parsed()) status = linearize::cli::RunChat(chat_args);
  status.Update(linearize::cli::RunJobCommand(job_commands, job_args));
  if (!status.ok()) {
    std::cerr << "linearize: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
