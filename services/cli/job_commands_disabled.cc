// job_commands.h for a `linearize` built without the services
// (-DLINEARIZE_WITH_SERVICES=OFF: no gRPC, e.g. on the GPU machine). The job
// commands parse as usual and then fail with a message that says why,
// instead of being unknown commands.
#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "services/cli/job_commands.h"

namespace linearize::cli {

std::vector<CLI::App*> AddJobCommands(CLI::App& app, JobCommandArgs& args) {
  std::vector<CLI::App*> commands;
  for (const char* name : {"submit", "watch", "list", "get", "cancel", "logs", "models"}) {
    CLI::App* cmd = app.add_subcommand(
        name, "Conversion jobs on linearize-scheduler (unavailable: built without the services)");
    cmd->allow_extras();  // accept the usual arguments, then say why it cannot run
    commands.push_back(cmd);
  }
  return commands;
}

absl::Status RunJobCommand(const std::vector<CLI::App*>& commands, const JobCommandArgs& args) {
  for (CLI::App* cmd : commands) {
    if (!cmd->parsed()) continue;
    return absl::UnimplementedError(absl::StrCat(
        "linearize ", cmd->get_name(),
        " talks to linearize-scheduler over gRPC, and this linearize was built without the "
        "services (-DLINEARIZE_WITH_SERVICES=OFF); use a build with them"));
  }
  return absl::OkStatus();
}

}  // namespace linearize::cli
