#include "services/evaluator/model_resolver.h"

#include <grpcpp/client_context.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/io/model_config.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "services/common/auth.h"
#include "services/common/paths.h"
#include "services/common/status.h"

namespace linearize::evaluator {
namespace {

// The scheduler's built-in models (services/scheduler/submission.cc).
constexpr std::pair<const char*, const char*> kBuiltins[] = {
    {"smollm2-135m-instruct", "models/SmolLM2-135M-Instruct.Q4_1.gguf"},
};

// The caller's credentials, forwarded to the scheduler.
void Forward(const grpc::ServerContext* caller, grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (caller == nullptr) return;
  const auto& md = caller->client_metadata();
  for (const char* key : {"authorization", "x-linearize-tenant"}) {
    auto it = md.find(key);
    if (it != md.end()) ctx->AddMetadata(key, std::string(it->second.data(), it->second.size()));
  }
}

}  // namespace

ModelResolver::ModelResolver(std::string artifact_root, std::shared_ptr<grpc::Channel> scheduler)
    : root_(std::move(artifact_root)), scheduler_(std::move(scheduler)) {}

absl::StatusOr<std::string> ModelResolver::Resolve(const v1::ModelRef& ref, const std::string& field,
                                                   const grpc::ServerContext* caller) const {
  std::string rel;
  std::string what = field;
  switch (ref.source_case()) {
    case v1::ModelRef::kArtifactPath:
      rel = ref.artifact_path();
      what = field + ".artifact_path";
      break;
    case v1::ModelRef::kModelName: {
      what = field + ".model_name";
      for (const auto& [name, path] : kBuiltins) {
        if (ref.model_name() == name) rel = path;
      }
      if (!rel.empty()) break;
      if (scheduler_ == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": \"", ref.model_name(), "\" is not built in, and published models need "
            "--scheduler"));
      }
      auto stub = v1::JobService::NewStub(scheduler_);
      std::string token;
      do {
        grpc::ClientContext ctx;
        Forward(caller, &ctx);
        v1::ListJobsRequest req;
        req.add_states(v1::JOB_STATE_SUCCEEDED);
        req.set_page_size(1000);
        req.set_page_token(token);
        v1::ListJobsResponse resp;
        absl::Status s = server::FromGrpcStatus(stub->ListJobs(&ctx, req, &resp));
        if (!s.ok()) {
          return absl::Status(s.code(), absl::StrCat(what, ": looking it up in the scheduler: ",
                                                     s.message()));
        }
        for (const v1::Job& j : resp.jobs()) {
          if (j.model_name() == ref.model_name()) rel = j.artifact_path();
        }
        token = resp.next_page_token();
      } while (rel.empty() && !token.empty());
      if (rel.empty()) {
        return absl::NotFoundError(absl::StrCat(what, ": no model \"", ref.model_name(),
                                                "\" (neither built in nor published)"));
      }
      break;
    }
    case v1::ModelRef::kJobId: {
      what = field + ".job_id";
      if (scheduler_ == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(what, ": needs --scheduler"));
      }
      auto stub = v1::JobService::NewStub(scheduler_);
      grpc::ClientContext ctx;
      Forward(caller, &ctx);
      v1::GetJobRequest req;
      req.set_job_id(ref.job_id());
      v1::Job job;
      absl::Status s = server::FromGrpcStatus(stub->GetJob(&ctx, req, &job));
      if (absl::IsNotFound(s)) {
        return absl::NotFoundError(absl::StrCat(what, ": no job \"", ref.job_id(), "\""));
      }
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
      }
      if (job.state() != v1::JOB_STATE_SUCCEEDED) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": job ", ref.job_id(), " is ", v1::JobState_Name(job.state()),
            "; only a SUCCEEDED job has a model"));
      }
      rel = job.artifact_path();
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  }
  absl::StatusOr<std::string> abs = server::ResolveExistingUnderRoot(root_, rel, what);
  if (!abs.ok()) return abs.status();
  return rel;
}

absl::StatusOr<int64_t> CheckpointVocabSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(path, ": missing"));
  absl::StatusOr<io::ModelConfig> config;
  if (S_ISDIR(st.st_mode)) {
    config = io::ReadHfConfig(path + "/config.json");
  } else if (absl::EndsWith(path, ".gguf")) {
    absl::StatusOr<std::unique_ptr<io::GgufFile>> gguf = io::GgufFile::Open(path);
    if (!gguf.ok()) return gguf.status();
    config = io::ModelConfigFromGguf(**gguf);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": neither a Hugging Face directory nor a .gguf file"));
  }
  if (!config.ok()) return config.status();
  return config->vocab_size;
}

}  // namespace linearize::evaluator
