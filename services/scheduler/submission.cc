#include "services/scheduler/submission.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/io/student_layout.h"
#include "nlohmann/json.hpp"
#include "services/scheduler/ids.h"
#include "services/scheduler/spec_defaults.h"
#include "services/scheduler/spec_validation.h"
#include "services/scheduler/sql_job_store.h"

namespace linearize::scheduler {
namespace {

#define LZ_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status _lz_status = (expr);        \
    if (!_lz_status.ok()) return _lz_status; \
  } while (0)

absl::Status Prefixed(const absl::Status& s, absl::StatusCode code, const std::string& field,
                      const std::string& path) {
  return absl::Status(code, absl::StrCat(field, ": \"", path, "\": ", s.message()));
}

// Reads the config of a checkpoint (Hugging Face directory or .gguf file).
absl::StatusOr<io::ModelConfig> ReadTeacherConfig(const std::string& abs_path,
                                                  const std::string& field,
                                                  const std::string& rel_path) {
  struct stat st;
  if (stat(abs_path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(field, ": \"", rel_path, "\" does not exist"));
  }
  absl::StatusOr<io::ModelConfig> config;
  if (S_ISDIR(st.st_mode)) {
    const std::string config_path = abs_path + "/config.json";
    if (stat(config_path.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": \"", rel_path,
                       "\" is a directory without config.json; a teacher is a "
                       "Hugging Face checkpoint directory or a .gguf file"));
    }
    config = io::ReadHfConfig(config_path);
  } else if (absl::EndsWith(abs_path, ".gguf")) {
    absl::StatusOr<std::unique_ptr<io::GgufFile>> gguf = io::GgufFile::Open(abs_path);
    if (!gguf.ok()) {
      return Prefixed(gguf.status(), absl::StatusCode::kFailedPrecondition, field, rel_path);
    }
    config = io::ModelConfigFromGguf(**gguf);
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": \"", rel_path,
                     "\" is neither a Hugging Face checkpoint directory nor a .gguf "
                     "file"));
  }
  if (!config.ok()) {
    // Unreadable configs and unsupported architectures alike: the teacher
    // cannot be converted.
    return Prefixed(config.status(), absl::StatusCode::kFailedPrecondition, field, rel_path);
  }
  return config;
}

absl::Status CheckSourcePath(const ArtifactRoot& root, const v1::TextSource& s,
                             const std::string& field) {
  return root.Resolve(s.path(), field + ".path").status();
}

// Every data and evaluation path must exist under the root.
absl::Status ResolveDataPaths(const ArtifactRoot& root, const v1::ConversionSpec& spec) {
  const v1::DataSpec& d = spec.data();
  for (int i = 0; i < d.train_size(); ++i) {
    LZ_RETURN_IF_ERROR(CheckSourcePath(root, d.train(i), absl::StrCat("spec.data.train[", i, "]")));
  }
  for (int i = 0; i < d.validation_size(); ++i) {
    LZ_RETURN_IF_ERROR(
        CheckSourcePath(root, d.validation(i), absl::StrCat("spec.data.validation[", i, "]")));
  }
  if (d.self_distillation().has_prompts()) {
    LZ_RETURN_IF_ERROR(CheckSourcePath(root, d.self_distillation().prompts(),
                                       "spec.data.self_distillation.prompts"));
  }
  for (int i = 0; i < spec.evaluation_tasks_size(); ++i) {
    const v1::EvaluationTask& t = spec.evaluation_tasks(i);
    const std::string f = absl::StrCat("spec.evaluation_tasks[", i, "]");
    for (int k = 0; k < t.perplexity().sources_size(); ++k) {
      LZ_RETURN_IF_ERROR(CheckSourcePath(root, t.perplexity().sources(k),
                                         absl::StrCat(f, ".perplexity.sources[", k, "]")));
    }
    const v1::MultipleChoiceTask& m = t.multiple_choice();
    for (int k = 0; k < m.paths_size(); ++k) {
      LZ_RETURN_IF_ERROR(
          root.Resolve(m.paths(k), absl::StrCat(f, ".multiple_choice.paths[", k, "]")).status());
    }
    if (!m.shots_path().empty()) {
      LZ_RETURN_IF_ERROR(root.Resolve(m.shots_path(), f + ".multiple_choice.shots_path").status());
    }
  }
  return absl::OkStatus();
}

// spec.init_from resolved to `from`: a converted model (config.json with a
// linear_attention section) of the job's recipe and the teacher's shape,
// with its LoRA kept apart (init_from.h reads it from there).
absl::Status CheckInitFrom(const ResolvedTeacher& from, const ResolvedTeacher& teacher,
                           const ArtifactRoot& root, v1::RecipeKind kind) {
  const std::string at = absl::StrCat("spec.init_from: \"", from.path, "\"");
  absl::StatusOr<std::string> abs = root.Resolve(from.path, "spec.init_from");
  if (!abs.ok()) return abs.status();
  std::ifstream in(*abs + "/config.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  const nlohmann::json* section =
      in && j.is_object() && j.contains("linear_attention") ? &j["linear_attention"] : nullptr;
  if (section == nullptr || !section->is_object() || !section->contains("recipe") ||
      !(*section)["recipe"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        at, " is not a converted model (no config.json with a linear_attention section)"));
  }
  const std::string recipe = (*section)["recipe"].get<std::string>();
  const std::string want = kind == v1::RECIPE_KIND_LOLCATS  ? "lolcats"
                           : kind == v1::RECIPE_KIND_LIZARD ? "lizard"
                                                            : "linear";
  if (recipe != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, " was converted with the ", recipe, " recipe; this job's is ", want));
  }
  if (!io::StudentAdapterDir(*abs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        at, " has no LoRA kept apart (adapter/, delta/ or adapter_model.safetensors): a model ",
        "published with its LoRA merged cannot go on training"));
  }
  const io::ModelConfig &a = from.config, &b = teacher.config;
  for (const auto& [name, x, y] :
       {std::tuple{"hidden_size", a.hidden_size, b.hidden_size},
        std::tuple{"num_hidden_layers", a.num_hidden_layers, b.num_hidden_layers},
        std::tuple{"num_attention_heads", a.num_attention_heads, b.num_attention_heads},
        std::tuple{"num_key_value_heads", a.num_key_value_heads, b.num_key_value_heads},
        std::tuple{"vocab_size", a.vocab_size, b.vocab_size}}) {
    if (x != y) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " has ", name, " ", x, "; the teacher has ", y));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<BuiltinModel>& BuiltinModels() {
  static const std::vector<BuiltinModel> models = {
      {"smollm2-135m-instruct", "models/SmolLM2-135M-Instruct.Q4_1.gguf"},
  };
  return models;
}

absl::StatusOr<ResolvedTeacher> ResolveTeacher(const v1::ModelRef& teacher,
                                               const std::string& tenant, JobStore& store,
                                               const ArtifactRoot& root) {
  return ResolveModel(teacher, "spec.teacher", tenant, store, root);
}

absl::StatusOr<ResolvedTeacher> ResolveModel(const v1::ModelRef& teacher, const std::string& at,
                                             const std::string& tenant, JobStore& store,
                                             const ArtifactRoot& root) {
  std::string field, rel;
  switch (teacher.source_case()) {
    case v1::ModelRef::kArtifactPath:
      field = at + ".artifact_path";
      rel = teacher.artifact_path();
      break;
    case v1::ModelRef::kModelName: {
      field = at + ".model_name";
      for (const BuiltinModel& m : BuiltinModels()) {
        if (teacher.model_name() == m.name) rel = m.path;
      }
      if (rel.empty()) {
        absl::StatusOr<v1::Job> job = store.FindPublishedModel(tenant, teacher.model_name());
        if (absl::IsNotFound(job.status())) {
          return absl::NotFoundError(absl::StrCat(
              field, ": no model \"", teacher.model_name(),
              "\" (neither built in nor published by a SUCCEEDED job of this tenant)"));
        }
        if (!job.ok()) return job.status();
        rel = job->artifact_path();
      }
      break;
    }
    case v1::ModelRef::kJobId: {
      field = at + ".job_id";
      absl::StatusOr<v1::Job> job = store.GetJob(tenant, teacher.job_id());
      if (absl::IsNotFound(job.status())) {
        return absl::NotFoundError(absl::StrCat(field, ": no job \"", teacher.job_id(), "\""));
      }
      if (!job.ok()) return job.status();
      if (job->state() != v1::JOB_STATE_SUCCEEDED) {
        return absl::FailedPreconditionError(absl::StrCat(
            field, ": job ", teacher.job_id(), " is ", v1::JobState_Name(job->state()).substr(10),
            "; only a SUCCEEDED job's model can be used"));
      }
      rel = job->artifact_path();
      break;
    }
    default:
      return absl::InvalidArgumentError(at + ": required");
  }
  absl::StatusOr<std::string> abs = root.Resolve(rel, field);
  if (!abs.ok()) {
    if (absl::IsNotFound(abs.status()) && teacher.has_artifact_path()) return abs.status();
    return absl::Status(abs.status().code(),
                        absl::StrCat(abs.status().message(), " (the checkpoint of ", field, ")"));
  }
  absl::StatusOr<io::ModelConfig> config = ReadTeacherConfig(*abs, field, rel);
  if (!config.ok()) return config.status();
  return ResolvedTeacher{rel, *std::move(config)};
}

std::vector<TaskPlan> PlanTasks(const v1::ConversionSpec& spec, int64_t num_layers) {
  std::vector<TaskPlan> plan;
  const v1::Budget& b = spec.budget();
  const int32_t gpus = b.cpu_only() ? 0 : std::max(1, b.gpus_per_task());
  const int64_t memory = b.cpu_only() ? 0 : b.min_gpu_memory_bytes();
  const v1::Recipe& r = spec.recipe();
  if (r.kind() != v1::RECIPE_KIND_LINEAR_BASELINE && !r.attention_transfer().training().skip()) {
    const int64_t per_block = r.attention_transfer().layers_per_block();
    if (per_block <= 0 || per_block >= num_layers) {
      plan.push_back({v1::STAGE_ATTENTION_TRANSFER, std::nullopt, gpus, memory});
    } else {
      for (int64_t first = 0; first < num_layers; first += per_block) {
        v1::LayerBlock block;
        block.set_first_layer(static_cast<int32_t>(first));
        block.set_num_layers(static_cast<int32_t>(std::min(per_block, num_layers - first)));
        plan.push_back({v1::STAGE_ATTENTION_TRANSFER, block, gpus, memory});
      }
    }
  }
  if (!r.finetune().training().skip()) {
    plan.push_back({v1::STAGE_FINETUNE, std::nullopt, gpus, memory});
  }
  if (!spec.skip_evaluation()) {
    plan.push_back({v1::STAGE_EVALUATE, std::nullopt, std::min(gpus, 1), memory});
  }
  plan.push_back({v1::STAGE_PUBLISH, std::nullopt, 0, 0});
  return plan;
}

absl::StatusOr<CreateJobResult> SubmitConversion(JobStore& store, const ArtifactRoot& root,
                                                 const std::string& tenant,
                                                 const v1::SubmitConversionRequest& request) {
  LZ_RETURN_IF_ERROR(ValidateSubmitRequest(request));
  for (const BuiltinModel& m : BuiltinModels()) {
    if (request.spec().output_model_name() == m.name) {
      return absl::AlreadyExistsError(
          absl::StrCat("spec.output_model_name: \"", m.name, "\" is the name of a built-in model"));
    }
  }
  absl::StatusOr<ResolvedTeacher> teacher =
      ResolveTeacher(request.spec().teacher(), tenant, store, root);
  if (!teacher.ok()) return teacher.status();
  std::string init_from;
  if (request.spec().has_init_from()) {
    absl::StatusOr<ResolvedTeacher> from =
        ResolveModel(request.spec().init_from(), "spec.init_from", tenant, store, root);
    if (!from.ok()) return from.status();
    LZ_RETURN_IF_ERROR(CheckInitFrom(*from, *teacher, root, request.spec().recipe().kind()));
    init_from = from->path;
  }
  LZ_RETURN_IF_ERROR(ResolveDataPaths(root, request.spec()));

  // Limits that depend on the teacher.
  const v1::AttentionTransferParams& at = request.spec().recipe().attention_transfer();
  const int64_t layers = teacher->config.num_hidden_layers;
  const int64_t context = teacher->config.max_position_embeddings;
  if (at.layers_per_block() > layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.recipe.attention_transfer.layers_per_block: ", at.layers_per_block(),
                     " exceeds the teacher's ", layers, " layers"));
  }
  if (at.training().sequence_length() > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.recipe.attention_transfer.training.sequence_length: ",
                     at.training().sequence_length(), " exceeds the teacher's maximum context of ",
                     context, " tokens"));
  }

  NewJob job;
  job.job.set_job_id(NewId("job"));
  job.job.set_tenant(tenant);
  job.job.set_display_name(request.display_name());
  job.job.set_priority(request.priority());
  *job.job.mutable_labels() = request.labels();
  job.job.set_request_id(request.request_id());
  v1::ConversionSpec* spec = job.job.mutable_spec();
  *spec = request.spec();
  if (!init_from.empty()) spec->mutable_init_from()->set_artifact_path(init_from);
  const bool default_stage1_length = at.training().sequence_length() == 0;
  FillSpecDefaults(spec, job.job.job_id());
  if (default_stage1_length) {
    // The recipe default, capped at what the teacher can attend to.
    v1::TrainingParams* t =
        spec->mutable_recipe()->mutable_attention_transfer()->mutable_training();
    t->set_sequence_length(static_cast<int32_t>(
        std::max<int64_t>(16, std::min<int64_t>(t->sequence_length(), context))));
  }
  job.request = SerializeDeterministic(request);
  job.teacher_path = teacher->path;
  job.tasks = PlanTasks(*spec, layers);
  return store.CreateJob(job);
}

}  // namespace linearize::scheduler
