#include "services/inference/inference_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "common/io/sha256.h"
#include "common/tokenizer/chat_template.h"
#include "google/protobuf/util/time_util.h"
#include "services/common/auth.h"
#include "services/common/paths.h"
#include "services/common/status.h"

namespace linearize::inference {
namespace {

using google::protobuf::util::TimeUtil;

grpc::Status ToGrpc(const absl::Status& s) { return server::ToGrpcStatus(s); }

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

google::protobuf::Timestamp Stamp(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

google::protobuf::Duration Dur(double seconds) {
  return TimeUtil::NanosecondsToDuration(static_cast<int64_t>(std::llround(seconds * 1e9)));
}

v1::SessionState ToProto(Lifecycle s) {
  switch (s) {
    case Lifecycle::kCreated: return v1::SESSION_STATE_CREATED;
    case Lifecycle::kActive: return v1::SESSION_STATE_ACTIVE;
    case Lifecycle::kIdle: return v1::SESSION_STATE_IDLE;
    case Lifecycle::kSpilled: return v1::SESSION_STATE_SPILLED;
    case Lifecycle::kExpired: return v1::SESSION_STATE_EXPIRED;
    case Lifecycle::kDeleted: return v1::SESSION_STATE_DELETED;
  }
  return v1::SESSION_STATE_UNSPECIFIED;
}

void Fill(const SessionInfo& i, v1::Session* out) {
  out->set_session_id(i.id);
  out->set_tenant(i.tenant);
  out->set_model_name(i.model_name);
  out->set_state(ToProto(i.state));
  out->set_tokens_seen(i.tokens_seen);
  out->set_state_bytes(i.state_bytes);
  *out->mutable_create_time() = Stamp(i.create_time);
  *out->mutable_last_use_time() = Stamp(i.last_use_time);
  const bool ended = i.state == Lifecycle::kExpired || i.state == Lifecycle::kDeleted;
  if (!ended && i.state != Lifecycle::kActive) {
    *out->mutable_expire_time() = Stamp(i.last_use_time + i.idle_timeout);
  }
  if (ended) *out->mutable_end_time() = Stamp(i.end_time);
  *out->mutable_idle_timeout() = Dur(absl::ToDoubleSeconds(i.idle_timeout));
  out->set_parent_session_id(i.parent_id);
  out->set_turns(i.turns);
  for (const auto& [k, v] : i.labels) (*out->mutable_labels())[k] = v;
}

v1::AttentionKind AttentionOf(const model::LoadedModel& m) {
  if (!m.linear_attention) return v1::ATTENTION_KIND_SOFTMAX;
  switch (m.linear_attention->recipe) {
    case model::Recipe::kLolcats: return v1::ATTENTION_KIND_LOLCATS_HYBRID;
    case model::Recipe::kLizard: return v1::ATTENTION_KIND_LIZARD_HYBRID;
    case model::Recipe::kLinear: return v1::ATTENTION_KIND_LINEAR;
  }
  return v1::ATTENTION_KIND_UNSPECIFIED;
}

void Fill(const ServedModel& m, const SessionStore::Usage& usage, v1::ModelInfo* out) {
  out->set_name(m.name);
  out->mutable_source()->set_artifact_path(m.path);
  out->set_state(v1::MODEL_STATE_LOADED);
  out->set_attention(AttentionOf(m.loaded));
  if (m.loaded.linear_attention) {
    switch (m.loaded.linear_attention->recipe) {
      case model::Recipe::kLolcats: out->set_recipe(v1::RECIPE_KIND_LOLCATS); break;
      case model::Recipe::kLizard: out->set_recipe(v1::RECIPE_KIND_LIZARD); break;
      case model::Recipe::kLinear: out->set_recipe(v1::RECIPE_KIND_LINEAR_BASELINE); break;
    }
  }
  const model::LlamaModel& lm = *m.loaded.model;
  int64_t params = 0, bytes = 0;
  for (const at::Tensor& t : {lm.weights().embed, lm.weights().lm_head, lm.weights().final_norm}) {
    if (!t.defined()) continue;
    params += t.numel();
    bytes += static_cast<int64_t>(t.nbytes());
  }
  out->set_parameter_count(params);
  out->set_num_layers(static_cast<int32_t>(lm.num_layers()));
  out->set_vocab_size(static_cast<int32_t>(lm.vocab_size()));
  out->set_max_context_tokens(lm.recurrent() ? 0 : m.loaded.config.max_position_embeddings);
  out->set_session_state_bytes(m.state_bytes);
  out->set_resident_sessions(static_cast<int32_t>(usage.resident));
  out->set_spilled_sessions(static_cast<int32_t>(usage.spilled));
  out->set_chat_format(std::string(tokenizer::ChatFormatName(m.loaded.chat_format)));
  out->set_device(lm.device().str());
  out->set_weights_bytes(bytes);
  out->set_fingerprint(m.fingerprint);
  *out->mutable_load_time() = Stamp(m.load_time);
}

// The proto's sampling parameters as the engine's, or INVALID_ARGUMENT
// naming the field.
absl::Status ApplySampling(const v1::SamplingParams& p, int64_t vocab, int64_t max_tokens_cap,
                           runtime::StreamRequest* r) {
  const float temperature = p.has_temperature() ? p.temperature() : 1.0f;
  if (!std::isfinite(temperature) || temperature < 0 || temperature > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature must be in [0, 10], got ", temperature));
  }
  if (p.top_k() < 0 || p.top_k() > vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k must be in [0, ", vocab, "], got ", p.top_k()));
  }
  const float top_p = p.has_top_p() ? p.top_p() : 1.0f;
  if (!std::isfinite(top_p) || top_p <= 0 || top_p > 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_p must be in (0, 1], got ", top_p));
  }
  if (!std::isfinite(p.min_p()) || p.min_p() < 0 || p.min_p() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.min_p must be in [0, 1], got ", p.min_p()));
  }
  const float penalty = p.has_repetition_penalty() ? p.repetition_penalty() : 1.0f;
  if (!std::isfinite(penalty) || penalty <= 0 || penalty > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.repetition_penalty must be in (0, 10], got ", penalty));
  }
  if (p.max_tokens() < 0 || p.max_tokens() > max_tokens_cap) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens must be in [0, ", max_tokens_cap, "], got ", p.max_tokens()));
  }
  if (p.stop_size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.stop: at most 16 strings, got ", p.stop_size()));
  }
  for (const std::string& s : p.stop()) {
    if (s.empty() || s.size() > 256) {
      return absl::InvalidArgumentError("sampling.stop: each string must be 1 to 256 bytes");
    }
  }
  if (p.stop_token_ids_size() > 64) {
    return absl::InvalidArgumentError("sampling.stop_token_ids: at most 64 ids");
  }
  for (int32_t id : p.stop_token_ids()) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop_token_ids: ", id, " is outside [0, ", vocab, ")"));
    }
  }
  if (p.logprobs() < 0 || p.logprobs() > 20) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.logprobs must be in [0, 20], got ", p.logprobs()));
  }
  r->sampling.temperature = temperature;
  r->sampling.top_k = p.top_k();
  r->sampling.top_p = top_p;
  r->sampling.min_p = p.min_p();
  r->sampling.repetition_penalty = penalty;
  // Unset seed: random, as documented.
  r->sampling.seed = p.has_seed() ? p.seed() : absl::ToUnixNanos(absl::Now());
  r->max_tokens = p.max_tokens() == 0 ? 256 : p.max_tokens();
  r->stop_strings.assign(p.stop().begin(), p.stop().end());
  r->stop_token_ids.insert(r->stop_token_ids.end(), p.stop_token_ids().begin(),
                           p.stop_token_ids().end());
  r->logprobs = p.logprobs();
  r->include_special_tokens = p.include_special_tokens();
  return absl::OkStatus();
}

// SessionOptions as the store takes them; INVALID_ARGUMENT for a negative
// idle timeout.
absl::StatusOr<NewSessionOptions> SessionOptionsOf(const v1::SessionOptions& o) {
  NewSessionOptions opts;
  if (o.has_idle_timeout()) {
    const int64_t ns = TimeUtil::DurationToNanoseconds(o.idle_timeout());
    if (ns < 0) return absl::InvalidArgumentError("options.idle_timeout must not be negative");
    opts.idle_timeout = absl::Nanoseconds(ns);
  }
  opts.labels.insert(o.labels().begin(), o.labels().end());
  return opts;
}

std::string RoleName(v1::ChatRole role) {
  switch (role) {
    case v1::CHAT_ROLE_SYSTEM: return "system";
    case v1::CHAT_ROLE_USER: return "user";
    case v1::CHAT_ROLE_ASSISTANT: return "assistant";
    default: return "";
  }
}

// Messages -> template text -> ids. A session that already holds tokens
// continues a conversation: no default system prompt, no second BOS.
absl::StatusOr<std::vector<int32_t>> RenderMessages(const ServedModel& m,
                                                    const v1::ChatMessages& messages,
                                                    int64_t tokens_seen, int64_t max_bytes,
                                                    bool generation_prompt) {
  if (messages.messages_size() == 0) {
    return absl::InvalidArgumentError("messages: at least one message is required");
  }
  std::vector<tokenizer::ChatMessage> list;
  int64_t bytes = 0;
  for (int i = 0; i < messages.messages_size(); ++i) {
    const v1::ChatMessage& msg = messages.messages(i);
    const std::string role = RoleName(msg.role());
    if (role.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is not set"));
    }
    bytes += static_cast<int64_t>(msg.content().size());
    list.push_back({role, msg.content()});
  }
  if (bytes > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("messages: ", bytes, " bytes exceed the limit of ", max_bytes));
  }
  const bool fresh = tokens_seen == 0;
  std::string text = tokenizer::RenderChat(m.loaded.chat_format, list, generation_prompt,
                                           fresh ? m.loaded.default_system_prompt : "");
  if (!fresh && m.loaded.tokenizer->bos_id()) {
    const std::string bos = m.loaded.tokenizer->TokenBytes(*m.loaded.tokenizer->bos_id());
    if (!bos.empty() && absl::StartsWith(text, bos)) text.erase(0, bos.size());
  }
  return m.loaded.tokenizer->Encode(text);
}

// Events of one running generation, handed from the engine thread to the
// RPC thread.
class QueueSink final : public runtime::StreamSink {
 public:
  void OnDelta(runtime::StreamDelta d) override {
    absl::MutexLock lock(&mu_);
    deltas_.push_back(std::move(d));
  }
  void OnEnd(runtime::StreamEnd e) override {
    absl::MutexLock lock(&mu_);
    end_ = std::move(e);
  }
  // Waits up to `timeout` for events; returns the deltas and the end if it came.
  std::pair<std::vector<runtime::StreamDelta>, std::optional<runtime::StreamEnd>> Wait(
      absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !deltas_.empty() || end_.has_value();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    std::vector<runtime::StreamDelta> out(std::make_move_iterator(deltas_.begin()),
                                          std::make_move_iterator(deltas_.end()));
    deltas_.clear();
    std::optional<runtime::StreamEnd> end;
    if (out.empty()) end.swap(end_);  // deliver every delta before the end
    return {std::move(out), std::move(end)};
  }

 private:
  absl::Mutex mu_;
  std::deque<runtime::StreamDelta> deltas_ ABSL_GUARDED_BY(mu_);
  std::optional<runtime::StreamEnd> end_ ABSL_GUARDED_BY(mu_);
};

v1::FinishReason ToProto(runtime::StreamFinish f) {
  switch (f) {
    case runtime::StreamFinish::kStop: return v1::FINISH_REASON_STOP;
    case runtime::StreamFinish::kLength: return v1::FINISH_REASON_LENGTH;
    case runtime::StreamFinish::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case runtime::StreamFinish::kContextLimit: return v1::FINISH_REASON_CONTEXT_LIMIT;
    case runtime::StreamFinish::kError: return v1::FINISH_REASON_UNSPECIFIED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

}  // namespace

struct InferenceServiceImpl::Turn {
  std::vector<int32_t> input;
  bool chat = false;  // feed the turn-end marker afterwards
  v1::SamplingParams sampling;
};

InferenceServiceImpl::InferenceServiceImpl(ServiceOptions options, ModelRegistry& models,
                                           SessionStore& sessions)
    : options_(std::move(options)), models_(models), sessions_(sessions) {}

absl::StatusOr<std::string> InferenceServiceImpl::Tenant(grpc::ServerContext* context) {
  absl::StatusOr<server::Principal> p = server::PrincipalOf(context);
  if (!p.ok()) return p.status();
  return p->tenant;
}

grpc::Status InferenceServiceImpl::ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                                              v1::ListModelsResponse* resp) {
  if (absl::StatusOr<std::string> t = Tenant(ctx); !t.ok()) return ToGrpc(t.status());
  if (req->page_size() < 0 || req->page_size() > 1000) {
    return Invalid(absl::StrCat("page_size must be in [0, 1000], got ", req->page_size()));
  }
  const SessionStore::Usage usage = sessions_.usage();
  for (const auto& m : models_.List()) {
    if (!req->page_token().empty() && m->name <= req->page_token()) continue;
    if (req->page_size() > 0 && resp->models_size() == req->page_size()) {
      resp->set_next_page_token(resp->models(resp->models_size() - 1).name());
      break;
    }
    Fill(*m, usage, resp->add_models());
  }
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::LoadModel(grpc::ServerContext* ctx, const v1::LoadModelRequest* req,
                                             v1::ModelInfo* resp) {
  if (absl::StatusOr<std::string> t = Tenant(ctx); !t.ok()) return ToGrpc(t.status());
  std::string path;
  switch (req->model().source_case()) {
    case v1::ModelRef::kArtifactPath: {
      absl::StatusOr<std::string> p = server::ResolveExistingUnderRoot(
          options_.artifact_root, req->model().artifact_path(), "model.artifact_path");
      if (!p.ok()) return ToGrpc(p.status());
      path = *p;
      break;
    }
    case v1::ModelRef::kModelName: {
      if (req->model().model_name() != "smollm2-135m-instruct") {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("model.model_name: no registry model named \"",
                                         req->model().model_name(), "\""));
      }
      absl::StatusOr<std::string> p = model::FindDefaultModel();
      if (!p.ok()) return ToGrpc(p.status());
      path = *p;
      break;
    }
    case v1::ModelRef::kJobId:
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "model.job_id: serving a job's output by id is not supported yet; "
                          "load its artifact_path");
    default:
      return Invalid("model: one of artifact_path, model_name or job_id is required");
  }
  const std::string name = req->name().empty()
                               ? (req->model().has_model_name() ? req->model().model_name()
                                                                : DefaultModelName(path))
                               : req->name();
  if (!req->device().empty() && req->device() != "cpu" && !absl::StartsWith(req->device(), "cuda:")) {
    return Invalid(absl::StrCat("device must be \"cpu\" or \"cuda:<n>\", got \"", req->device(), "\""));
  }
  absl::StatusOr<std::shared_ptr<ServedModel>> m = models_.Load(name, path);
  if (!m.ok()) return ToGrpc(m.status());
  if (options_.metrics != nullptr) {
    (*m)->engine->SetStepObserver(
        [h = options_.metrics->batch_size](int64_t n) { h->Observe(static_cast<double>(n)); });
  }
  Fill(**m, sessions_.usage(), resp);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::UnloadModel(grpc::ServerContext* ctx,
                                               const v1::UnloadModelRequest* req,
                                               v1::ModelInfo* resp) {
  if (absl::StatusOr<std::string> t = Tenant(ctx); !t.ok()) return ToGrpc(t.status());
  std::shared_ptr<ServedModel> m = models_.Find(req->name());
  if (m == nullptr) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model ", req->name(), " is not loaded"));
  }
  // Sessions stay valid: they are written to disk and spill when used again.
  if (absl::Status s = sessions_.Persist(/*all=*/true); !s.ok()) return ToGrpc(s);
  Fill(*m, sessions_.usage(), resp);
  resp->set_state(v1::MODEL_STATE_AVAILABLE);
  return ToGrpc(models_.Unload(req->name()));
}

absl::StatusOr<v1::Session> InferenceServiceImpl::NewSession(const std::string& tenant,
                                                             const v1::CreateSessionRequest& req) {
  if (absl::Status s = ValidateModelName(req.model_name(), "model_name"); !s.ok()) return s;
  std::shared_ptr<ServedModel> m = models_.Find(req.model_name());
  if (m == nullptr) return absl::NotFoundError(absl::StrCat("model ", req.model_name(), " is not loaded"));
  if (req.system_prompt().size() > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("system_prompt: ", req.system_prompt().size(),
                                                   " bytes exceed the limit of 65536"));
  }
  absl::StatusOr<NewSessionOptions> opts = SessionOptionsOf(req.options());
  if (!opts.ok()) return opts.status();
  auto state = std::make_unique<runtime::SessionState>();
  state->memory = m->loaded.model->NewMemory(1);
  if (!req.system_prompt().empty()) {
    v1::ChatMessages system;
    auto* msg = system.add_messages();
    msg->set_role(v1::CHAT_ROLE_SYSTEM);
    msg->set_content(req.system_prompt());
    absl::StatusOr<std::vector<int32_t>> ids =
        RenderMessages(*m, system, 0, 65536, /*generation_prompt=*/false);
    if (!ids.ok()) return ids.status();
    std::vector<int64_t> v(ids->begin(), ids->end());
    absl::StatusOr<at::Tensor> logits = m->loaded.model->Forward(
        at::tensor(v, at::TensorOptions().dtype(at::kLong)).view({1, -1}), state->memory.get(),
        model::LlamaModel::Logits::kLast);
    if (!logits.ok()) return logits.status();
    state->logits = logits->view({-1});
  }
  absl::StatusOr<SessionInfo> info = sessions_.Create(tenant, req.model_name(), std::move(state), *opts);
  if (!info.ok()) return info.status();
  v1::Session out;
  Fill(*info, &out);
  return out;
}

grpc::Status InferenceServiceImpl::CreateSession(grpc::ServerContext* ctx,
                                                 const v1::CreateSessionRequest* req,
                                                 v1::Session* resp) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<v1::Session> s = NewSession(*tenant, *req);
  if (!s.ok()) return ToGrpc(s.status());
  *resp = *std::move(s);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::GetSession(grpc::ServerContext* ctx, const v1::GetSessionRequest* req,
                                              v1::Session* resp) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<SessionInfo> info = sessions_.Get(*tenant, req->session_id());
  if (!info.ok()) return ToGrpc(info.status());
  Fill(*info, resp);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::ListSessions(grpc::ServerContext* ctx,
                                                const v1::ListSessionsRequest* req,
                                                v1::ListSessionsResponse* resp) {
  if (req->page_size() < 0 || req->page_size() > 1000) {
    return Invalid(absl::StrCat("page_size must be in [0, 1000], got ", req->page_size()));
  }
  const int limit = req->page_size() == 0 ? 50 : req->page_size();
  int64_t skip = 0;
  if (!req->page_token().empty()) {
    if (!absl::SimpleAtoi(req->page_token(), &skip) || skip < 0) {
      return Invalid(absl::StrCat("page_token \"", req->page_token(), "\" is not a token this server issued"));
    }
  }
  int64_t index = 0;
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  for (const SessionInfo& s : sessions_.List(*tenant, req->model_name())) {
    if (req->states_size() > 0 &&
        std::find(req->states().begin(), req->states().end(), ToProto(s.state)) == req->states().end()) {
      continue;
    }
    bool labels_match = true;
    for (const auto& [k, v] : req->labels()) {
      auto it = s.labels.find(k);
      labels_match = labels_match && it != s.labels.end() && it->second == v;
    }
    if (!labels_match) continue;
    if (index++ < skip) continue;
    if (resp->sessions_size() == limit) {
      resp->set_next_page_token(absl::StrCat(skip + limit));
      break;
    }
    Fill(s, resp->add_sessions());
  }
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::ForkSession(grpc::ServerContext* ctx, const v1::ForkSessionRequest* req,
                                               v1::Session* resp) {
  absl::StatusOr<std::string> who = Tenant(ctx);
  if (!who.ok()) return ToGrpc(who.status());
  const std::string tenant = *who;
  absl::StatusOr<SessionInfo> source = sessions_.Get(tenant, req->session_id());
  if (!source.ok()) return ToGrpc(source.status());
  absl::StatusOr<std::unique_ptr<runtime::SessionState>> copy =
      sessions_.CopyState(tenant, req->session_id());
  if (!copy.ok()) return ToGrpc(copy.status());
  NewSessionOptions opts;
  if (req->has_options()) {
    absl::StatusOr<NewSessionOptions> given = SessionOptionsOf(req->options());
    if (!given.ok()) return ToGrpc(given.status());
    opts = *std::move(given);
  } else {
    opts.idle_timeout = source->idle_timeout;
    opts.labels = source->labels;
  }
  opts.parent_id = req->session_id();
  absl::StatusOr<SessionInfo> info = sessions_.Create(tenant, source->model_name, *std::move(copy), opts);
  if (!info.ok()) return ToGrpc(info.status());
  Fill(*info, resp);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::SnapshotSession(grpc::ServerContext* ctx,
                                                   const v1::SnapshotSessionRequest* req,
                                                   v1::SessionSnapshot* resp) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<std::pair<std::string, SessionInfo>> snap =
      sessions_.Snapshot(*tenant, req->session_id());
  if (!snap.ok()) return ToGrpc(snap.status());
  const auto& [blob, info] = *snap;
  std::shared_ptr<ServedModel> m = models_.Find(info.model_name);
  absl::StatusOr<runtime::StateBlobInfo> header = runtime::InspectState(blob);
  if (!header.ok()) return ToGrpc(header.status());
  resp->set_format_version(header->format_version);
  resp->set_checksum(io::Sha256Label(blob));
  resp->set_size_bytes(static_cast<int64_t>(blob.size()));
  resp->set_model_name(info.model_name);
  resp->set_model_fingerprint(header->model_fingerprint);
  resp->set_tokens_seen(header->position);
  resp->set_source_session_id(info.id);
  *resp->mutable_create_time() = Stamp(absl::Now());
  if (req->output_path().empty()) {
    if (static_cast<int64_t>(blob.size()) > options_.max_inline_snapshot_bytes) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("the snapshot has ", blob.size(), " bytes, more than the inline limit of ",
                                       options_.max_inline_snapshot_bytes, ": set output_path"));
    }
    resp->set_data(blob);
    return grpc::Status::OK;
  }
  absl::StatusOr<std::string> path = server::ResolveUnderRoot(options_.artifact_root, req->output_path(), "output_path");
  if (!path.ok()) return ToGrpc(path.status());
  const int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Invalid(absl::StrCat("output_path: cannot create \"", req->output_path(), "\": ", std::strerror(errno)));
  }
  const bool ok = ::write(fd, blob.data(), blob.size()) == static_cast<ssize_t>(blob.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path->c_str());
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StrCat("output_path: writing failed"));
  }
  resp->set_artifact_path(req->output_path());
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::RestoreSession(grpc::ServerContext* ctx,
                                                  const v1::RestoreSessionRequest* req,
                                                  v1::Session* resp) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  const v1::SessionSnapshot& snap = req->snapshot();
  std::string blob = snap.data();
  if (!snap.artifact_path().empty()) {
    absl::StatusOr<std::string> path = server::ResolveUnderRoot(options_.artifact_root, snap.artifact_path(), "snapshot.artifact_path");
    if (!path.ok()) return ToGrpc(path.status());
    const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("snapshot.artifact_path: ", snap.artifact_path(), " not found"));
    blob.clear();
    char buf[1 << 16];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) blob.append(buf, static_cast<size_t>(n));
    ::close(fd);
  }
  if (blob.empty()) return Invalid("snapshot: data or artifact_path is required");
  if (!snap.checksum().empty() && io::Sha256Label(blob) != snap.checksum()) {
    return Invalid("snapshot.checksum does not match the snapshot's data");
  }
  if (snap.format_version() != 0 && snap.format_version() != runtime::kStateFormatVersion) {
    return Invalid(absl::StrCat("snapshot.format_version ", snap.format_version(), " is unknown"));
  }
  absl::StatusOr<runtime::StateBlobInfo> header = runtime::InspectState(blob);
  if (!header.ok()) return ToGrpc(header.status());
  const std::string model_name = req->model_name().empty() ? snap.model_name() : req->model_name();
  std::shared_ptr<ServedModel> m = models_.Find(model_name);
  if (m == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model ", model_name, " is not loaded"));
  absl::StatusOr<runtime::SessionState> state = runtime::DecodeState(blob, *m->loaded.model, m->fingerprint);
  if (!state.ok()) return ToGrpc(state.status());
  absl::StatusOr<NewSessionOptions> opts = SessionOptionsOf(req->options());
  if (!opts.ok()) return ToGrpc(opts.status());
  opts->parent_id = snap.source_session_id();
  absl::StatusOr<SessionInfo> info = sessions_.Create(
      *tenant, model_name, std::make_unique<runtime::SessionState>(*std::move(state)), *opts);
  if (!info.ok()) return ToGrpc(info.status());
  Fill(*info, resp);
  return grpc::Status::OK;
}

grpc::Status InferenceServiceImpl::DeleteSession(grpc::ServerContext* ctx,
                                                 const v1::DeleteSessionRequest* req,
                                                 v1::DeleteSessionResponse*) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  if (!sessions_.Get(*tenant, req->session_id()).ok()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("session ", req->session_id(), " not found"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (auto it = running_.find(req->session_id()); it != running_.end()) it->second->Cancel();
  }
  return ToGrpc(sessions_.Delete(*tenant, req->session_id()));
}

void InferenceServiceImpl::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (auto& [id, handle] : running_) handle->Cancel();
}

absl::Status InferenceServiceImpl::RunTurn(grpc::ServerContext* context, SessionStore::Pin& pin,
                                           const Turn& turn,
                                           const std::function<bool(v1::GenerateResponse&)>& emit) {
  const ServedModel& m = pin.model();
  runtime::StreamRequest r;
  r.state = &pin.state();
  r.input = turn.input;
  if (turn.chat) r.turn_end = m.turn_end;
  if (absl::Status s = ApplySampling(turn.sampling, m.loaded.model->vocab_size(),
                                     options_.max_tokens_per_call, &r);
      !s.ok()) {
    return s;
  }
  if (!turn.sampling.ignore_eos()) {
    r.stop_token_ids.insert(r.stop_token_ids.end(), m.stop_ids.begin(), m.stop_ids.end());
  }
  if (!m.loaded.model->recurrent()) r.max_context = m.loaded.config.max_position_embeddings;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    r.deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     context->deadline() - std::chrono::system_clock::now());
  }
  auto sink = std::make_shared<QueueSink>();
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("the server is shutting down");
  }
  absl::StatusOr<std::shared_ptr<runtime::Engine::Handle>> handle = m.engine->Submit(std::move(r), sink);
  if (!handle.ok()) return handle.status();
  {
    absl::MutexLock lock(&mu_);
    running_[pin.info().id] = *handle;
  }
  bool client_gone = false;
  std::optional<runtime::StreamEnd> end;
  const absl::Time start = absl::Now();
  absl::Time last_token;
  while (!end) {
    auto [deltas, finished] = sink->Wait(absl::Milliseconds(50));
    for (runtime::StreamDelta& d : deltas) {
      if (options_.metrics != nullptr && !d.ids.empty()) {
        const absl::Time now = absl::Now();
        if (last_token == absl::Time()) {
          options_.metrics->time_to_first_token->Observe(absl::ToDoubleSeconds(now - start));
        } else {
          options_.metrics->inter_token_latency->Observe(absl::ToDoubleSeconds(now - last_token));
        }
        last_token = now;
        options_.metrics->generation_tokens->Increment(static_cast<double>(d.ids.size()));
      }
      if (client_gone) continue;
      v1::GenerateResponse msg;
      v1::TokenDelta* out = msg.mutable_delta();
      out->set_text(std::move(d.text));
      out->mutable_token_ids()->Add(d.ids.begin(), d.ids.end());
      for (size_t i = 0; i < d.logprobs.size() && i < d.ids.size(); ++i) {
        v1::TokenLogprob* lp = out->add_logprobs();
        lp->set_token_id(d.ids[i]);
        lp->set_token(m.loaded.tokenizer->Decode(std::span<const int32_t>(&d.ids[i], 1)));
        lp->set_logprob(d.logprobs[i].chosen);
        for (const auto& [id, v] : d.logprobs[i].top) {
          v1::TopLogprob* top = lp->add_top_logprobs();
          top->set_token_id(id);
          top->set_token(m.loaded.tokenizer->Decode(std::span<const int32_t>(&id, 1)));
          top->set_logprob(v);
        }
      }
      if (!emit(msg)) {
        client_gone = true;
        (*handle)->Cancel();
      }
    }
    end = std::move(finished);
    if (!end && !client_gone && context->IsCancelled()) {
      client_gone = true;
      (*handle)->Cancel();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    running_.erase(pin.info().id);
  }
  if (options_.metrics != nullptr) {
    options_.metrics->e2e_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    options_.metrics->prompt_tokens->Increment(static_cast<double>(end->prompt_tokens));
    options_.metrics->requests->Add({{"finish_reason", std::string(runtime::StreamFinishName(end->reason))}})
        .Increment();
  }
  if (end->reason == runtime::StreamFinish::kError) return end->error;
  v1::GenerateResponse msg;
  v1::GenerationEnd* e = msg.mutable_end();
  e->set_finish_reason(ToProto(end->reason));
  e->set_matched_stop(end->matched_stop);
  e->mutable_usage()->set_prompt_tokens(end->prompt_tokens);
  e->mutable_usage()->set_completion_tokens(end->completion_tokens);
  e->mutable_usage()->set_cached_tokens(end->cached_tokens);
  v1::Timings* t = e->mutable_timings();
  *t->mutable_queue_time() = Dur(end->queue_seconds);
  *t->mutable_restore_time() = Dur(pin.restore_seconds());
  *t->mutable_prefill_time() = Dur(end->prefill_seconds);
  *t->mutable_time_to_first_token() = Dur(end->first_token_seconds);
  *t->mutable_decode_time() = Dur(end->decode_seconds);
  if (end->prefill_seconds > 0) t->set_prefill_tokens_per_second(end->prompt_tokens / end->prefill_seconds);
  if (end->decode_seconds > 0 && end->completion_tokens > 1) {
    t->set_decode_tokens_per_second((end->completion_tokens - 1) / end->decode_seconds);
  }
  e->set_tokens_seen(end->tokens_seen);
  if (!client_gone) emit(msg);
  return absl::OkStatus();
}

grpc::Status InferenceServiceImpl::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                            grpc::ServerWriter<v1::GenerateResponse>* writer) {
  absl::StatusOr<std::string> tenant = Tenant(ctx);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<std::unique_ptr<SessionStore::Pin>> pin = sessions_.Acquire(*tenant, req->session_id());
  if (!pin.ok()) return ToGrpc(pin.status());
  const ServedModel& m = (*pin)->model();
  Turn turn;
  turn.sampling = req->sampling();
  switch (req->input_case()) {
    case v1::GenerateRequest::kPrompt:
      if (static_cast<int64_t>(req->prompt().size()) > options_.max_prompt_bytes) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("prompt: ", req->prompt().size(), " bytes exceed the limit of ",
                                         options_.max_prompt_bytes));
      }
      turn.input = m.loaded.tokenizer->Encode(req->prompt());
      if (turn.input.empty()) return Invalid("prompt: encodes to no tokens");
      break;
    case v1::GenerateRequest::kMessages: {
      absl::StatusOr<std::vector<int32_t>> ids = RenderMessages(
          m, req->messages(), (*pin)->state().memory->position(), options_.max_prompt_bytes, true);
      if (!ids.ok()) return ToGrpc(ids.status());
      turn.input = *std::move(ids);
      turn.chat = true;
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      if (req->token_ids().ids_size() == 0) return Invalid("token_ids.ids: at least one id is required");
      for (int32_t id : req->token_ids().ids()) {
        if (id < 0 || id >= m.loaded.model->vocab_size()) {
          return Invalid(absl::StrCat("token_ids.ids: ", id, " is outside [0, ", m.loaded.model->vocab_size(), ")"));
        }
      }
      turn.input.assign(req->token_ids().ids().begin(), req->token_ids().ids().end());
      break;
    default:
      break;
  }
  absl::Status s = RunTurn(ctx, **pin, turn, [&](v1::GenerateResponse& msg) { return writer->Write(msg); });
  return ToGrpc(s);
}

grpc::Status InferenceServiceImpl::Chat(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<v1::ChatResponse, v1::ChatRequest>* stream) {
  absl::StatusOr<std::string> who = Tenant(ctx);
  if (!who.ok()) return ToGrpc(who.status());
  const std::string tenant = *who;
  v1::ChatRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_start()) return Invalid("the first message of a Chat stream must be start");
  const v1::ChatStart start = first.start();
  std::string session_id = start.session_id();
  if (start.has_create_session()) {
    absl::StatusOr<v1::Session> created = NewSession(tenant, start.create_session());
    if (!created.ok()) return ToGrpc(created.status());
    session_id = created->session_id();
  } else if (session_id.empty()) {
    return Invalid("start: session_id or create_session is required");
  }
  absl::StatusOr<std::unique_ptr<SessionStore::Pin>> pin = sessions_.Acquire(tenant, session_id);
  if (!pin.ok()) return ToGrpc(pin.status());
  {
    v1::ChatResponse started;
    started.set_turn(0);
    absl::StatusOr<SessionInfo> info = sessions_.Get(tenant, session_id);
    if (info.ok()) Fill(*info, started.mutable_started());
    if (!stream->Write(started)) return grpc::Status::OK;
  }
  // A reader thread queues the client's messages so `cancel` is seen while
  // a turn runs.
  absl::Mutex mu;
  std::deque<v1::ChatRequest> inbox;
  bool closed = false;
  std::thread reader([&] {
    v1::ChatRequest msg;
    while (stream->Read(&msg)) {
      absl::MutexLock lock(&mu);
      if (msg.has_cancel()) {
        absl::MutexLock running(&mu_);
        if (auto it = running_.find(session_id); it != running_.end()) it->second->Cancel();
        inbox.clear();  // waiting turns are dropped too
        continue;
      }
      inbox.push_back(msg);
    }
    absl::MutexLock lock(&mu);
    closed = true;
  });
  grpc::Status result = grpc::Status::OK;
  int32_t turn_number = 0;
  for (;;) {
    v1::ChatRequest msg;
    {
      absl::MutexLock lock(&mu);
      auto ready = [&]() { return closed || !inbox.empty(); };
      mu.Await(absl::Condition(&ready));
      if (inbox.empty()) break;  // closed and drained
      if (inbox.size() > 9) {
        result = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "more than 8 turns are waiting");
        break;
      }
      msg = std::move(inbox.front());
      inbox.pop_front();
    }
    if (msg.has_start()) {
      result = Invalid("a Chat stream takes one start message");
      break;
    }
    ++turn_number;
    Turn turn;
    turn.chat = true;
    turn.sampling = msg.input().has_sampling() ? msg.input().sampling() : start.sampling();
    v1::ChatMessages messages;
    if (msg.input().has_messages()) {
      messages = msg.input().messages();
    } else {
      auto* user = messages.add_messages();
      user->set_role(v1::CHAT_ROLE_USER);
      user->set_content(msg.input().text());
    }
    absl::StatusOr<std::vector<int32_t>> ids = RenderMessages(
        (*pin)->model(), messages, (*pin)->state().memory->position(), options_.max_prompt_bytes, true);
    if (!ids.ok()) {
      result = ToGrpc(ids.status());
      break;
    }
    turn.input = *std::move(ids);
    const int32_t n = turn_number;
    absl::Status s = RunTurn(ctx, **pin, turn, [&](v1::GenerateResponse& g) {
      v1::ChatResponse out;
      out.set_turn(n);
      if (g.has_delta()) *out.mutable_delta() = std::move(*g.mutable_delta());
      if (g.has_end()) *out.mutable_end() = std::move(*g.mutable_end());
      return stream->Write(out);
    });
    if (!s.ok()) {
      result = ToGrpc(s);
      break;
    }
  }
  if (!result.ok()) ctx->TryCancel();  // unblocks the reader
  reader.join();
  pin->reset();
  if (start.delete_on_close()) (void)sessions_.Delete(tenant, session_id);
  return result;
}

}  // namespace linearize::inference
