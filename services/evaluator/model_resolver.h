// Where the model of a ModelRef is, under the artifact root:
//   artifact_path  checked to exist inside the root;
//   model_name     a built-in model (the embedded default), else the
//                  output_model_name of the caller's SUCCEEDED job, looked up
//                  in the scheduler's JobService;
//   job_id         that job's artifact_path (it must have SUCCEEDED).
// Scheduler lookups carry the caller's own credentials (its bearer token,
// or with auth off its tenant header), so a caller only finds its tenant's
// models.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "linearize/v1/common.pb.h"

namespace linearize::evaluator {

class ModelResolver {
 public:
  // `scheduler` may be null: then only artifact paths and built-in names
  // resolve (FAILED_PRECONDITION for the others).
  ModelResolver(std::string artifact_root, std::shared_ptr<grpc::Channel> scheduler);

  // The path relative to the root. Errors name `field`: INVALID_ARGUMENT
  // (empty ref, bad path), NOT_FOUND, FAILED_PRECONDITION (job not
  // SUCCEEDED).
  absl::StatusOr<std::string> Resolve(const v1::ModelRef& ref, const std::string& field,
                                      const grpc::ServerContext* caller) const;

 private:
  std::string root_;
  std::shared_ptr<grpc::Channel> scheduler_;
};

// The vocabulary size in the config of a checkpoint (a Hugging Face
// directory or a .gguf file), for comparing a model with its teacher.
absl::StatusOr<int64_t> CheckpointVocabSize(const std::string& absolute_path);

}  // namespace linearize::evaluator
