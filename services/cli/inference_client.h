// The `linearize` commands that talk to the inference service:
//   linearize chat [MODEL] --server ADDR   an interactive chat that keeps its
//                                          session (lines from stdin)
//   linearize generate --server ADDR ...   one generation on a new session
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace CLI { class App; }

namespace linearize::cli {

struct GenerateArgs;

struct ServerArgs {
  std::string address = "127.0.0.1:50053";
  std::string token;  // sent as "authorization: Bearer <token>" when set
};

struct ChatArgs {
  ServerArgs server;
  // A registry name (the embedded default is "smollm2-135m-instruct") or a
  // checkpoint path under the server's artifact root.
  std::string model = "smollm2-135m-instruct";
  std::string session;  // attach to this session instead of creating one
  std::string system;
  int64_t max_tokens = 256;
  double temperature = 0.0;
  uint64_t seed = 0;
  bool delete_on_exit = false;
};

CLI::App* AddChatCommand(CLI::App& app, ChatArgs& args);
absl::Status RunChat(const ChatArgs& args);

// `linearize generate --server`: the same output as the local command, from
// the service.
absl::Status RunRemoteGenerate(const GenerateArgs& args, const ServerArgs& server);

}  // namespace linearize::cli
