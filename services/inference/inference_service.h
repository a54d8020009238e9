// InferenceService over gRPC (proto/linearize/v1/inference_service.proto):
// models from the ModelRegistry, sessions from the SessionStore, tokens from
// each model's continuous-batching Engine. Maps absl::Status to gRPC codes.
// Every call acts for the tenant of its bearer token: a tenant sees only its
// own sessions.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "linearize/v1/inference_service.grpc.pb.h"
#include "services/inference/inference_metrics.h"
#include "services/inference/model_registry.h"
#include "services/inference/session_store.h"

namespace linearize::inference {

struct ServiceOptions {
  std::string artifact_root;           // model paths and snapshot files resolve inside it
  int64_t max_prompt_bytes = 1 << 20;  // Generate/Chat input text
  int64_t max_tokens_per_call = 131072;
  int64_t max_inline_snapshot_bytes = 256LL << 20;
  InferenceMetrics* metrics = nullptr;  // optional
};

class InferenceServiceImpl final : public v1::InferenceService::Service {
 public:
  InferenceServiceImpl(ServiceOptions options, ModelRegistry& models, SessionStore& sessions);

  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse*) override;
  grpc::Status LoadModel(grpc::ServerContext*, const v1::LoadModelRequest*,
                         v1::ModelInfo*) override;
  grpc::Status UnloadModel(grpc::ServerContext*, const v1::UnloadModelRequest*,
                           v1::ModelInfo*) override;
  grpc::Status CreateSession(grpc::ServerContext*, const v1::CreateSessionRequest*,
                             v1::Session*) override;
  grpc::Status GetSession(grpc::ServerContext*, const v1::GetSessionRequest*,
                          v1::Session*) override;
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override;
  grpc::Status ForkSession(grpc::ServerContext*, const v1::ForkSessionRequest*,
                           v1::Session*) override;
  grpc::Status SnapshotSession(grpc::ServerContext*, const v1::SnapshotSessionRequest*,
                               v1::SessionSnapshot*) override;
  grpc::Status RestoreSession(grpc::ServerContext*, const v1::RestoreSessionRequest*,
                              v1::Session*) override;
  grpc::Status DeleteSession(grpc::ServerContext*, const v1::DeleteSessionRequest*,
                             v1::DeleteSessionResponse*) override;
  grpc::Status Generate(grpc::ServerContext*, const v1::GenerateRequest*,
                        grpc::ServerWriter<v1::GenerateResponse>*) override;
  grpc::Status Chat(grpc::ServerContext*,
                    grpc::ServerReaderWriter<v1::ChatResponse, v1::ChatRequest>*) override;

  // Refuses new generations (UNAVAILABLE) and cancels the running ones.
  void Drain();

 private:
  struct Turn;
  // Runs one generation on a pinned session, sending its events to `emit`.
  absl::Status RunTurn(grpc::ServerContext* context, SessionStore::Pin& pin,
                       const Turn& turn,
                       const std::function<bool(v1::GenerateResponse&)>& emit);
  absl::StatusOr<v1::Session> NewSession(const std::string& tenant,
                                         const v1::CreateSessionRequest& request);
  // The caller's tenant (services/common/auth.h); UNAUTHENTICATED otherwise.
  static absl::StatusOr<std::string> Tenant(grpc::ServerContext* context);

  const ServiceOptions options_;
  ModelRegistry& models_;
  SessionStore& sessions_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<runtime::Engine::Handle>> running_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace linearize::inference
