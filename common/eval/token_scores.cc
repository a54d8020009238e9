#include "common/eval/token_scores.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"

namespace linearize::eval {
namespace {

// Positions whose logits are materialised at once ([slice, V]).
constexpr int64_t kLogitSlice = 256;

at::Tensor ToTensor(std::span<const int32_t> ids) {
  at::Tensor t = at::empty({static_cast<int64_t>(ids.size())}, at::kLong);
  std::copy(ids.begin(), ids.end(), t.data_ptr<int64_t>());
  return t;
}

// Calls `fn(first_target, logp)` with float64 log-probabilities [s, V] of the
// targets [first_target, first_target + s) of one chunk (offsets in chunk).
absl::Status ForEachLogProbSlice(
    const model::LlamaModel& model, const at::Tensor& chunk_ids,
    const std::function<void(int64_t, const at::Tensor&)>& fn) {
  absl::StatusOr<at::Tensor> hidden = model.ForwardHidden(chunk_ids.unsqueeze(0));
  if (!hidden.ok()) return hidden.status();
  const int64_t len = chunk_ids.size(0);
  for (int64_t j = 1; j < len; j += kLogitSlice) {
    const int64_t stop = std::min(j + kLogitSlice, len);
    // Target j is predicted by the hidden state at j - 1.
    const at::Tensor logits = model.LmHead((*hidden)[0].slice(0, j - 1, stop - 1));
    fn(j, at::log_softmax(logits.to(at::kDouble), -1).cpu());
  }
  return absl::OkStatus();
}

// Chunk boundaries [begin, end) with end - begin >= 2.
std::vector<std::pair<int64_t, int64_t>> Chunks(int64_t n, int64_t chunk) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t b = 0; b < n; b += chunk) {
    const int64_t e = std::min(b + chunk, n);
    if (e - b >= 2) out.emplace_back(b, e);
  }
  return out;
}

}  // namespace

absl::StatusOr<int64_t> ResolveChunk(const model::LlamaModel& model, int64_t chunk) {
  const int64_t context = model.config().max_position_embeddings;
  if (chunk == 0) return context;
  if (chunk < 2 || chunk > context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk must be 0 (the model's context) or in [2, ", context, "], got ", chunk));
  }
  return chunk;
}

absl::StatusOr<TokenNll> ScoreTokens(const model::LlamaModel& model,
                                     std::span<const int32_t> ids, int64_t chunk) {
  if (ids.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("scoring needs at least 2 tokens, got ", ids.size()));
  }
  absl::StatusOr<int64_t> len = ResolveChunk(model, chunk);
  if (!len.ok()) return len.status();
  try {
    at::NoGradGuard no_grad;
    const at::Tensor all = ToTensor(ids);
    TokenNll out;
    for (const auto& [b, e] : Chunks(all.size(0), *len)) {
      const at::Tensor chunk_ids = all.slice(0, b, e);
      absl::Status st = ForEachLogProbSlice(
          model, chunk_ids, [&](int64_t first, const at::Tensor& logp) {
            const int64_t s = logp.size(0);
            const at::Tensor targets = chunk_ids.slice(0, first, first + s).unsqueeze(1);
            const at::Tensor nll = -logp.gather(1, targets).squeeze(1).contiguous();
            const double* p = nll.data_ptr<double>();
            for (int64_t i = 0; i < s; ++i) {
              out.nll.push_back(p[i]);
              out.position.push_back(first + i);
            }
          });
      if (!st.ok()) return st;
    }
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("scoring failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<PositionCurve> CurveByPosition(const TokenNll& scores, int64_t bucket) {
  if (bucket < 1) {
    return absl::InvalidArgumentError(absl::StrCat("bucket must be >= 1, got ", bucket));
  }
  if (scores.nll.size() != scores.position.size()) {
    return absl::InvalidArgumentError("scores: nll and position differ in length");
  }
  int64_t max_pos = 0;
  for (int64_t p : scores.position) max_pos = std::max(max_pos, p);
  const int64_t buckets = max_pos / bucket + 1;
  std::vector<double> sum(buckets, 0.0);
  std::vector<int64_t> count(buckets, 0);
  for (size_t i = 0; i < scores.nll.size(); ++i) {
    if (scores.position[i] < 0) return absl::InvalidArgumentError("scores: negative position");
    sum[scores.position[i] / bucket] += scores.nll[i];
    ++count[scores.position[i] / bucket];
  }
  PositionCurve curve;
  curve.bucket = bucket;
  for (int64_t b = 0; b < buckets; ++b) {
    if (count[b] == 0) continue;
    curve.start.push_back(b * bucket);
    curve.mean_nll.push_back(sum[b] / static_cast<double>(count[b]));
    curve.count.push_back(count[b]);
  }
  return curve;
}

absl::StatusOr<Comparison> CompareModels(
    const model::LlamaModel& teacher, const model::LlamaModel& student,
    std::span<const int32_t> ids, int64_t chunk,
    const std::function<absl::Status(const at::Tensor& chunk_ids)>& after_teacher) {
  if (teacher.vocab_size() != student.vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("teacher and student vocabularies differ: ", teacher.vocab_size(), " vs ",
                     student.vocab_size()));
  }
  if (ids.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("comparison needs at least 2 tokens, got ", ids.size()));
  }
  const int64_t context = std::min(teacher.config().max_position_embeddings,
                                   student.config().max_position_embeddings);
  if (chunk != 0 && (chunk < 2 || chunk > context)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk must be 0 (the models' context) or in [2, ", context, "], got ", chunk));
  }
  const int64_t len = chunk == 0 ? context : chunk;
  try {
    at::NoGradGuard no_grad;
    const at::Tensor all = ToTensor(ids);
    double t_nll = 0, s_nll = 0, kl = 0;
    int64_t agree = 0, tokens = 0;
    for (const auto& [b, e] : Chunks(all.size(0), len)) {
      const at::Tensor chunk_ids = all.slice(0, b, e);
      // Teacher log-probabilities of the whole chunk are kept ([T, V]
      // float64) while the student's are computed slice by slice.
      std::vector<at::Tensor> teacher_slices;
      absl::Status st = ForEachLogProbSlice(
          teacher, chunk_ids,
          [&](int64_t, const at::Tensor& logp) { teacher_slices.push_back(logp); });
      if (!st.ok()) return st;
      if (after_teacher) {
        if (st = after_teacher(chunk_ids); !st.ok()) return st;
      }
      size_t k = 0;
      st = ForEachLogProbSlice(student, chunk_ids, [&](int64_t first, const at::Tensor& sl) {
        const at::Tensor& tl = teacher_slices.at(k++);
        const int64_t s = sl.size(0);
        const at::Tensor targets = chunk_ids.slice(0, first, first + s).unsqueeze(1);
        t_nll -= tl.gather(1, targets).sum().item<double>();
        s_nll -= sl.gather(1, targets).sum().item<double>();
        // Terms with p_teacher = 0 contribute 0.
        const at::Tensor p = tl.exp();
        kl += at::where(p > 0, p * (tl - sl), at::zeros_like(p)).sum().item<double>();
        agree += tl.argmax(-1).eq(sl.argmax(-1)).sum().item<int64_t>();
        tokens += s;
      });
      if (!st.ok()) return st;
    }
    Comparison c;
    c.tokens = tokens;
    c.teacher_mean_nll = t_nll / static_cast<double>(tokens);
    c.student_mean_nll = s_nll / static_cast<double>(tokens);
    c.teacher_perplexity = std::exp(c.teacher_mean_nll);
    c.student_perplexity = std::exp(c.student_mean_nll);
    c.perplexity_ratio = c.student_perplexity / c.teacher_perplexity;
    c.kl = kl / static_cast<double>(tokens);
    c.top1_agreement = static_cast<double>(agree) / static_cast<double>(tokens);
    return c;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("comparison failed: ", e.what_without_backtrace()));
  }
}

}  // namespace linearize::eval
