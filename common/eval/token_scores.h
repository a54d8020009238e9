// Per-token scores of a token stream under one model or a teacher/student
// pair. The stream is cut into consecutive chunks that are each scored from
// position 0 in one forward (every token after a chunk's first is a target),
// so a target's "position" is its offset in its chunk: the x axis of a
// perplexity-vs-position curve. For one total perplexity over a long text
// with maximal context use runtime::Perplexity (sliding windows) instead.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"

namespace linearize::eval {

// Chunk length for a model: `chunk` when > 0, else max_position_embeddings.
// INVALID_ARGUMENT when chunk is 1 or negative, or above the model's context.
absl::StatusOr<int64_t> ResolveChunk(const model::LlamaModel& model, int64_t chunk);

struct TokenNll {
  std::vector<double> nll;         // -log p(target), natural log
  std::vector<int64_t> position;   // the target's offset in its chunk (>= 1)
};

// Scores ids (>= 2 tokens) in chunks of `chunk` tokens (0: the model's
// context); a last chunk of a single token is dropped (it has no target).
absl::StatusOr<TokenNll> ScoreTokens(const model::LlamaModel& model,
                                     std::span<const int32_t> ids, int64_t chunk = 0);

// Mean NLL per bucket of `bucket` positions: bucket b holds targets with
// position in [b * bucket, (b + 1) * bucket).
struct PositionCurve {
  int64_t bucket = 0;
  std::vector<int64_t> start;   // first position of each bucket
  std::vector<double> mean_nll;
  std::vector<int64_t> count;   // targets in each bucket (buckets with 0 are left out)
};
absl::StatusOr<PositionCurve> CurveByPosition(const TokenNll& scores, int64_t bucket);

// Teacher vs student on the same chunks of the same stream.
struct Comparison {
  int64_t tokens = 0;             // targets scored
  double teacher_mean_nll = 0;
  double student_mean_nll = 0;
  double teacher_perplexity = 0;
  double student_perplexity = 0;
  double perplexity_ratio = 0;    // student / teacher
  double kl = 0;                  // mean over targets of KL(teacher || student), nats
  double top1_agreement = 0;      // fraction of positions with the same argmax
};
// INVALID_ARGUMENT when the vocabularies differ in size or the ids do not fit.
// `chunk` 0: the smaller of the two models' contexts. `after_teacher`, when
// set, runs after the teacher's forward of each chunk, before the
// student's (a caller that records the teacher's activations reads them
// there); its error ends the comparison.
absl::StatusOr<Comparison> CompareModels(
    const model::LlamaModel& teacher, const model::LlamaModel& student,
    std::span<const int32_t> ids, int64_t chunk = 0,
    const std::function<absl::Status(const at::Tensor& chunk_ids)>& after_teacher = {});

}  // namespace linearize::eval
