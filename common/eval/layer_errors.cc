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

absl::StatusOr<std::vector<LayerError>> CompareAttentionLayers(const model::LlamaModel& teacher,
                                                               const model::LlamaModel& student,
                                                               std::span<const int32_t> ids,
                                                               int64_t chunk) {
  const io::ModelConfig& c = teacher.config();
  const io::ModelConfig& s = student.config();
  if (s.num_hidden_layers != c.num_hidden_layers || s.hidden_size != c.hidden_size ||
      s.num_attention_heads != c.num_attention_heads || s.head_dim != c.head_dim) {
    return absl::InvalidArgumentError(
        "CompareAttentionLayers: the student's layers do not have the teacher's shapes");
  }
  if (ids.empty()) return absl::InvalidArgumentError("CompareAttentionLayers: no tokens");
  absl::StatusOr<int64_t> length = ResolveChunk(teacher, chunk);
  if (!length.ok()) return length.status();
  // A probe sharing the teacher's weights whose softmax layers record their
  // inputs and outputs; the teacher itself stays untouched.
  absl::StatusOr<std::unique_ptr<model::LlamaModel>> probe =
      model::LlamaModel::Create(c, teacher.weights());
  if (!probe.ok()) return probe.status();
  std::vector<model::LayerRecord> records(static_cast<size_t>(c.num_hidden_layers));
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    (*probe)->SetAttention(l,
                           model::RecordingAttention::Softmax(c, &records[static_cast<size_t>(l)]));
    if (student.attention(l).name() != "softmax") layers.push_back(l);
  }
  std::vector<double> err(layers.size(), 0), ref(layers.size(), 0);
  std::vector<int64_t> elements(layers.size(), 0);
  int64_t tokens = 0;
  const at::NoGradGuard no_grad;
  try {
    for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(*length)) {
      const size_t n = std::min(ids.size() - begin, static_cast<size_t>(*length));
      const std::vector<int64_t> piece(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                       ids.begin() + static_cast<std::ptrdiff_t>(begin + n));
      const at::Tensor x = at::tensor(piece, at::kLong).view({1, -1}).to(teacher.device());
      absl::StatusOr<at::Tensor> h = (*probe)->ForwardHidden(x);
      if (!h.ok()) return h.status();
      for (size_t i = 0; i < layers.size(); ++i) {
        const model::LayerRecord& r = records[static_cast<size_t>(layers[i])];
        const at::Tensor want = r.out.to(at::kDouble);
        const at::Tensor got =
            student.attention(layers[i]).Forward(r.in, nullptr, 0).to(at::kDouble);
        err[i] += (got - want).pow(2).sum().item<double>();
        ref[i] += want.pow(2).sum().item<double>();
        elements[i] += want.numel();
      }
      tokens += static_cast<int64_t>(n);
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("CompareAttentionLayers: ", e.what_without_backtrace()));
  }
  std::vector<LayerError> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    out.push_back({layers[i], tokens,
                   err[i] / static_cast<double>(std::max<int64_t>(elements[i], 1)),
                   ref[i] > 0 ? std::sqrt(err[i] / ref[i]) : 0.0});
  }
  return out;
}

}  // namespace linearize::eval
