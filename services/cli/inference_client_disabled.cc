// inference_client.h for a `linearize` built without the services
// (-DLINEARIZE_WITH_SERVICES=OFF: no gRPC, e.g. on the GPU machine). The
// local commands work as usual; `chat` and `generate --server` need the
// gRPC client, so they parse as usual and then fail with a message that
// says why, instead of being unknown commands.
#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/cli/generate_command.h"
#include "services/cli/inference_client.h"

namespace linearize::cli {
namespace {

absl::Status Unavailable(const std::string& command) {
  return absl::UnimplementedError(absl::StrCat(
      command, " talks to linearize-inference over gRPC, and this linearize was built "
               "without the services (-DLINEARIZE_WITH_SERVICES=OFF); use a build with them"));
}

}  // namespace

CLI::App* AddChatCommand(CLI::App& app, ChatArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "chat", "Chat with a model served by linearize-inference (unavailable: built without "
              "the services)");
  cmd->allow_extras();  // accept the usual arguments, then say why it cannot run
  return cmd;
}

absl::Status RunChat(const ChatArgs& args) { return Unavailable("chat"); }

absl::Status RunRemoteGenerate(const GenerateArgs& args, const ServerArgs& server) {
  return Unavailable("generate --server");
}

}  // namespace linearize::cli
