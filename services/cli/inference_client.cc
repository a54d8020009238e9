#include "services/cli/inference_client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "linearize/v1/inference_service.grpc.pb.h"
#include "services/cli/generate_command.h"

namespace linearize::cli {
namespace {

namespace v1 = ::linearize::v1;

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::unique_ptr<v1::InferenceService::Stub> Connect(const ServerArgs& server) {
  return v1::InferenceService::NewStub(
      grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials()));
}

void Authorize(const ServerArgs& server, grpc::ClientContext* ctx) {
  if (!server.token.empty()) ctx->AddMetadata("authorization", "Bearer " + server.token);
}

// Loads MODEL on the server (a no-op when it is already loaded); returns its name.
absl::StatusOr<std::string> EnsureLoaded(v1::InferenceService::Stub& stub, const ServerArgs& server,
                                         const std::string& model) {
  v1::LoadModelRequest req;
  const bool is_path = model.find('/') != std::string::npos ||
                       (model.size() > 5 && model.substr(model.size() - 5) == ".gguf");
  if (is_path) {
    req.mutable_model()->set_artifact_path(model);
  } else {
    req.mutable_model()->set_model_name(model);
  }
  v1::ModelInfo info;
  grpc::ClientContext ctx;
  Authorize(server, &ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  if (grpc::Status s = stub.LoadModel(&ctx, req, &info); !s.ok()) {
    // Not in the registry: the server may already serve it under this name.
    if (!is_path && s.error_code() == grpc::StatusCode::NOT_FOUND) return model;
    return FromGrpc(s, absl::StrCat("loading ", model));
  }
  return info.name();
}

void FillSampling(v1::SamplingParams* s, int64_t max_tokens, double temperature, uint64_t seed) {
  s->set_max_tokens(static_cast<int32_t>(max_tokens));
  s->set_temperature(static_cast<float>(temperature));
  s->set_seed(seed);
}

}  // namespace

CLI::App* AddChatCommand(CLI::App& app, ChatArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "chat", "Chat with a model served by linearize-inference; the session keeps the "
              "conversation, so each turn sends only its own text");
  cmd->add_option("model", args.model, "registry name or checkpoint path under the server's root")
      ->capture_default_str();
  cmd->add_option("--server", args.server.address, "inference service address")
      ->capture_default_str();
  cmd->add_option("--token", args.server.token, "bearer token");
  cmd->add_option("--session", args.session, "continue this session instead of starting one");
  cmd->add_option("--system", args.system, "system prompt of a new session");
  cmd->add_option("--max-tokens", args.max_tokens, "most tokens per reply")->capture_default_str();
  cmd->add_option("--temperature", args.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--seed", args.seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--delete", args.delete_on_exit, "delete the session when the chat ends");
  return cmd;
}

absl::Status RunChat(const ChatArgs& args) {
  auto stub = Connect(args.server);
  absl::StatusOr<std::string> model = EnsureLoaded(*stub, args.server, args.model);
  if (!model.ok()) return model.status();
  grpc::ClientContext ctx;
  Authorize(args.server, &ctx);
  auto stream = stub->Chat(&ctx);
  v1::ChatRequest start;
  if (args.session.empty()) {
    start.mutable_start()->mutable_create_session()->set_model_name(*model);
    start.mutable_start()->mutable_create_session()->set_system_prompt(args.system);
  } else {
    start.mutable_start()->set_session_id(args.session);
  }
  FillSampling(start.mutable_start()->mutable_sampling(), args.max_tokens, args.temperature,
               args.seed);
  start.mutable_start()->set_delete_on_close(args.delete_on_exit);
  if (!stream->Write(start)) return FromGrpc(stream->Finish(), "chat");
  v1::ChatResponse resp;
  if (!stream->Read(&resp) || !resp.has_started()) return FromGrpc(stream->Finish(), "chat");
  std::cerr << "session " << resp.started().session_id() << " on " << *model
            << " (continue it with --session " << resp.started().session_id() << ")\n";
  const bool interactive = ::isatty(STDIN_FILENO);
  std::string line;
  for (;;) {
    if (interactive) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    v1::ChatRequest input;
    input.mutable_input()->set_text(line);
    if (!stream->Write(input)) break;
    if (!interactive) std::cout << "> " << line << "\n";
    while (stream->Read(&resp)) {
      if (resp.has_delta()) std::cout << resp.delta().text() << std::flush;
      if (resp.has_end()) {
        std::cout << "\n";
        const auto& t = resp.end().timings();
        std::cerr << "[" << resp.end().usage().completion_tokens() << " tokens, "
                  << static_cast<int64_t>(t.decode_tokens_per_second()) << " tok/s, context "
                  << resp.end().tokens_seen() << " tokens]\n";
        break;
      }
    }
  }
  stream->WritesDone();
  while (stream->Read(&resp)) {}
  return FromGrpc(stream->Finish(), "chat");
}

absl::Status RunRemoteGenerate(const GenerateArgs& args, const ServerArgs& server) {
  auto stub = Connect(server);
  absl::StatusOr<std::string> model =
      EnsureLoaded(*stub, server, args.model.empty() ? "smollm2-135m-instruct" : args.model);
  if (!model.ok()) return model.status();
  v1::CreateSessionRequest create;
  create.set_model_name(*model);
  if (args.chat) create.set_system_prompt(args.system);
  v1::Session session;
  {
    grpc::ClientContext ctx;
    Authorize(server, &ctx);
    if (grpc::Status s = stub->CreateSession(&ctx, create, &session); !s.ok()) {
      return FromGrpc(s, "creating a session");
    }
  }
  v1::GenerateRequest req;
  req.set_session_id(session.session_id());
  if (args.chat) {
    auto* m = req.mutable_messages()->add_messages();
    m->set_role(v1::CHAT_ROLE_USER);
    m->set_content(args.prompt);
  } else {
    req.set_prompt(args.prompt);
  }
  FillSampling(req.mutable_sampling(), args.max_tokens, args.temperature, args.seed);
  req.mutable_sampling()->set_top_k(static_cast<int32_t>(args.top_k));
  req.mutable_sampling()->set_top_p(static_cast<float>(args.top_p));
  grpc::ClientContext ctx;
  Authorize(server, &ctx);
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  v1::GenerationEnd end;
  while (reader->Read(&msg)) {
    if (msg.has_delta()) std::cout << msg.delta().text() << std::flush;
    if (msg.has_end()) end = msg.end();
  }
  std::cout << "\n";
  absl::Status status = FromGrpc(reader->Finish(), "generate");
  if (status.ok() && args.stats) {
    std::cerr << "prompt " << end.usage().prompt_tokens() << " tokens, completion "
              << end.usage().completion_tokens() << " tokens, decode "
              << end.timings().decode_tokens_per_second() << " tok/s\n";
  }
  grpc::ClientContext del_ctx;
  Authorize(server, &del_ctx);
  v1::DeleteSessionRequest del;
  del.set_session_id(session.session_id());
  v1::DeleteSessionResponse ignored;
  (void)stub->DeleteSession(&del_ctx, del, &ignored);
  return status;
}

}  // namespace linearize::cli
