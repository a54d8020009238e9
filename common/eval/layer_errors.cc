#include "common/eval/layer_errors.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/eval/token_scores.h"
#include "common/model/recording_attention.h"

namespace linearize::eval {

namespace {

// A probe sharing the teacher's weights whose softmax layers record their
// inputs and outputs (the teacher itself stays untouched), and the error
// sums of the student's converted layers on what the probe recorded.
class LayerErrorSums {
 public:
  static absl::StatusOr<std::unique_ptr<LayerErrorSums>> Create(const model::LlamaModel& teacher,
                                                                const model::LlamaModel& student) {
    const io::ModelConfig& c = teacher.config();
    const io::ModelConfig& s = student.config();
    if (s.num_hidden_layers != c.num_hidden_layers || s.hidden_size != c.hidden_size ||
        s.num_attention_heads != c.num_attention_heads || s.head_dim != c.head_dim) {
      return absl::InvalidArgumentError(
          "CompareAttentionLayers: the student's layers do not have the teacher's shapes");
    }
    absl::StatusOr<std::unique_ptr<model::LlamaModel>> probe =
        model::LlamaModel::Create(c, teacher.weights());
    if (!probe.ok()) return probe.status();
    auto sums = std::unique_ptr<LayerErrorSums>(new LayerErrorSums(student, *std::move(probe)));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      sums->probe_->SetAttention(
          l, model::RecordingAttention::Softmax(c, &sums->records_[static_cast<size_t>(l)]));
      if (student.attention(l).name() != "softmax") sums->layers_.push_back(l);
    }
    const size_t n = sums->layers_.size();
    sums->err_.assign(n, 0);
    sums->ref_.assign(n, 0);
    sums->elements_.assign(n, 0);
    return sums;
  }

  const model::LlamaModel& probe() const { return *probe_; }

  // After the probe's forward over a chunk of `tokens` positions.
  void Add(int64_t tokens) {
    for (size_t i = 0; i < layers_.size(); ++i) {
      const model::LayerRecord& r = records_[static_cast<size_t>(layers_[i])];
      const at::Tensor want = r.out.to(at::kDouble);
      const at::Tensor got = student_.attention(layers_[i]).Forward(r.in, nullptr, 0).to(at::kDouble);
      err_[i] += (got - want).pow(2).sum().item<double>();
      ref_[i] += want.pow(2).sum().item<double>();
      elements_[i] += want.numel();
    }
    tokens_ += tokens;
  }

  std::vector<LayerError> Result() const {
    std::vector<LayerError> out;
    for (size_t i = 0; i < layers_.size(); ++i) {
      out.push_back({layers_[i], tokens_,
                     err_[i] / static_cast<double>(std::max<int64_t>(elements_[i], 1)),
                     ref_[i] > 0 ? std::sqrt(err_[i] / ref_[i]) : 0.0});
    }
    return out;
  }

 private:
  LayerErrorSums(const model::LlamaModel& student, std::unique_ptr<model::LlamaModel> probe)
      : student_(student),
        probe_(std::move(probe)),
        records_(static_cast<size_t>(probe_->num_layers())) {}

  const model::LlamaModel& student_;
  std::unique_ptr<model::LlamaModel> probe_;
  std::vector<model::LayerRecord> records_;
  std::vector<int64_t> layers_;  // converted layers, in order
  std::vector<double> err_, ref_;
  std::vector<int64_t> elements_;
  int64_t tokens_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<LayerError>> CompareAttentionLayers(const model::LlamaModel& teacher,
                                                               const model::LlamaModel& student,
                                                               std::span<const int32_t> ids,
                                                               int64_t chunk) {
  absl::StatusOr<std::unique_ptr<LayerErrorSums>> sums = LayerErrorSums::Create(teacher, student);
  if (!sums.ok()) return sums.status();
  if (ids.empty()) return absl::InvalidArgumentError("CompareAttentionLayers: no tokens");
  absl::StatusOr<int64_t> length = ResolveChunk(teacher, chunk);
  if (!length.ok()) return length.status();
  const at::NoGradGuard no_grad;
  try {
    for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(*length)) {
      const size_t n = std::min(ids.size() - begin, static_cast<size_t>(*length));
      const std::vector<int64_t> piece(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                       ids.begin() + static_cast<std::ptrdiff_t>(begin + n));
      const at::Tensor x = at::tensor(piece, at::kLong).view({1, -1}).to(teacher.device());
      absl::StatusOr<at::Tensor> h = (*sums)->probe().ForwardHidden(x);
      if (!h.ok()) return h.status();
      (*sums)->Add(static_cast<int64_t>(n));
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("CompareAttentionLayers: ", e.what_without_backtrace()));
  }
  return (*sums)->Result();
}

absl::StatusOr<ComparisonWithLayers> CompareModelsAndLayers(const model::LlamaModel& teacher,
                                                            const model::LlamaModel& student,
                                                            std::span<const int32_t> ids,
                                                            int64_t chunk) {
  absl::StatusOr<std::unique_ptr<LayerErrorSums>> sums = LayerErrorSums::Create(teacher, student);
  if (!sums.ok()) return sums.status();
  // The probe computes the teacher's logits exactly (its layers are the
  // teacher's softmax layers, recording on the side).
  absl::StatusOr<Comparison> c = CompareModels(
      (*sums)->probe(), student, ids, chunk, [&](const at::Tensor& chunk_ids) {
        try {
          (*sums)->Add(chunk_ids.size(0));
        } catch (const c10::Error& e) {
          return absl::InvalidArgumentError(
              absl::StrCat("CompareAttentionLayers: ", e.what_without_backtrace()));
        }
        return absl::OkStatus();
      });
  if (!c.ok()) return c.status();
  return ComparisonWithLayers{*c, (*sums)->Result()};
}

}  // namespace linearize::eval
