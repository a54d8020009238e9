// SubmitConversion from request to stored job: field checks, paths resolved
// under the artifact root, the teacher resolved and its architecture
// checked, defaults filled, the task graph planned, the job created
// (idempotently on request_id).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/model_config.h"
#include "linearize/v1/job_service.pb.h"
#include "services/scheduler/artifact_root.h"
#include "services/scheduler/job_store.h"

namespace linearize::scheduler {

// Built-in registry names and their files under the artifact root.
struct BuiltinModel {
  const char* name;
  const char* path;
};
const std::vector<BuiltinModel>& BuiltinModels();

// A teacher resolved to a checkpoint under the artifact root.
struct ResolvedTeacher {
  std::string path;  // relative to the artifact root
  io::ModelConfig config;
};

// NOT_FOUND (no such file, model or job), FAILED_PRECONDITION (a job not
// SUCCEEDED, an unreadable config or an unsupported architecture),
// INVALID_ARGUMENT (a path outside the root); messages name spec.teacher.*.
absl::StatusOr<ResolvedTeacher> ResolveTeacher(const v1::ModelRef& teacher,
                                               const std::string& tenant, JobStore& store,
                                               const ArtifactRoot& root);

// The same for any model reference of a spec; messages name `at` (e.g.
// "spec.init_from").
absl::StatusOr<ResolvedTeacher> ResolveModel(const v1::ModelRef& ref, const std::string& at,
                                             const std::string& tenant, JobStore& store,
                                             const ArtifactRoot& root);

// The task graph of a spec with defaults filled in, for a teacher with
// `num_layers` decoder layers.
std::vector<TaskPlan> PlanTasks(const v1::ConversionSpec& spec, int64_t num_layers);

absl::StatusOr<CreateJobResult> SubmitConversion(JobStore& store, const ArtifactRoot& root,
                                                 const std::string& tenant,
                                                 const v1::SubmitConversionRequest& request);

}  // namespace linearize::scheduler
