#include "common/convert/block_inputs.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/convert/tensor_file.h"
#include "common/io/safetensors.h"
#include "common/model/weights.h"

namespace linearize::convert {
namespace {

// FNV-1a over the ids' bytes.
void Hash(const at::Tensor& ids, uint64_t* h) {
  const at::Tensor c = ids.to(at::kLong).contiguous().cpu();
  const auto* bytes = static_cast<const unsigned char*>(c.const_data_ptr());
  for (size_t i = 0; i < c.nbytes(); ++i) {
    *h ^= bytes[i];
    *h *= 1099511628211ULL;
  }
}

absl::StatusOr<at::Tensor> ComputeSplit(const model::LlamaModel& teacher, const at::Tensor& ids,
                                        int64_t layer, int64_t batch, const at::Tensor& from,
                                        int64_t from_layer) {
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < ids.size(0); i += batch) {
    const int64_t n = std::min(batch, ids.size(0) - i);
    absl::StatusOr<at::Tensor> x =
        TeacherStream(teacher, ids.narrow(0, i, n),
                      from.defined() ? from.narrow(0, i, n) : at::Tensor(), from_layer, layer);
    if (!x.ok()) return x.status();
    parts.push_back(x->cpu());
  }
  return at::cat(parts);
}

}  // namespace

absl::StatusOr<at::Tensor> TeacherStream(const model::LlamaModel& teacher, const at::Tensor& ids,
                                         const at::Tensor& start, int64_t start_layer,
                                         int64_t layer) {
  at::Tensor x = start;
  if (!x.defined()) {
    absl::StatusOr<at::Tensor> e = teacher.Embed(ids);
    if (!e.ok()) return e.status();
    x = *e;
  }
  return teacher.ForwardLayers(x, start_layer, layer - start_layer);
}

std::string DataFingerprint(const TokenData& data) {
  uint64_t h = 1469598103934665603ULL;
  Hash(data.train, &h);
  Hash(data.validation, &h);
  return absl::StrFormat("%016x", h);
}

absl::StatusOr<BlockInputs> ComputeBlockInputs(const model::LlamaModel& teacher,
                                               const TokenData& data, int64_t layer, int64_t batch,
                                               const BlockInputs* from) {
  if (from != nullptr && from->layer > layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("inputs of layer ", from->layer, " come after layer ", layer));
  }
  const at::NoGradGuard no_grad;
  BlockInputs out;
  out.layer = layer;
  const int64_t from_layer = from != nullptr ? from->layer : 0;
  absl::StatusOr<at::Tensor> train = ComputeSplit(teacher, data.train, layer, batch,
                                                  from ? from->train : at::Tensor(), from_layer);
  if (!train.ok()) return train.status();
  absl::StatusOr<at::Tensor> validation = ComputeSplit(
      teacher, data.validation, layer, batch, from ? from->validation : at::Tensor(), from_layer);
  if (!validation.ok()) return validation.status();
  out.train = *std::move(train);
  out.validation = *std::move(validation);
  return out;
}

// The metadata key of BlockInputs::teacher_val_ppl.
constexpr char kTeacherPerplexity[] = "teacher_val_ppl";

absl::Status WriteBlockInputs(const std::string& path, const BlockInputs& inputs,
                              const TokenData& data) {
  std::map<std::string, std::string> meta = {{"layer", absl::StrCat(inputs.layer)},
                                             {"data", DataFingerprint(data)}};
  // %.17g reads back as the same double.
  if (inputs.teacher_val_ppl > 0) {
    meta[kTeacherPerplexity] = absl::StrFormat("%.17g", inputs.teacher_val_ppl);
  }
  return WriteTensorFile(path, {{"train", inputs.train}, {"validation", inputs.validation}}, meta);
}

double StoredTeacherPerplexity(const std::string& path) {
  absl::StatusOr<std::unique_ptr<io::SafetensorsFile>> file = io::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  const auto it = (*file)->metadata().find(kTeacherPerplexity);
  double ppl = 0;
  if (it == (*file)->metadata().end() || !absl::SimpleAtod(it->second, &ppl) || !(ppl > 0)) {
    return 0;
  }
  return ppl;
}

absl::StatusOr<BlockInputs> ReadBlockInputs(const std::string& path, int64_t layer, int64_t hidden,
                                            const TokenData& data) {
  std::map<std::string, std::string> meta;
  absl::StatusOr<std::map<std::string, at::Tensor>> tensors = ReadTensorFile(path, &meta);
  if (!tensors.ok()) return tensors.status();
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("block inputs ", path, ": ", what));
  };
  int64_t stored_layer = -1;
  if (auto it = meta.find("layer");
      it == meta.end() || !absl::SimpleAtoi(it->second, &stored_layer)) {
    return bad("no \"layer\" in the metadata (not written by a block run)");
  }
  if (stored_layer != layer) {
    return bad(
        absl::StrCat("they enter layer ", stored_layer, " but the block starts at layer ", layer));
  }
  if (auto it = meta.find("data"); it == meta.end() || it->second != DataFingerprint(data)) {
    return bad("they were computed from other token data (different files, seq_len or split)");
  }
  BlockInputs out;
  out.layer = layer;
  if (auto it = meta.find(kTeacherPerplexity); it != meta.end()) {
    if (!absl::SimpleAtod(it->second, &out.teacher_val_ppl) || !(out.teacher_val_ppl > 0)) {
      return bad(absl::StrCat("\"", kTeacherPerplexity, "\" is ", it->second,
                              ", not a positive number"));
    }
  }
  for (const auto& [name, rows, slot] :
       {std::tuple{"train", data.train.size(0), &out.train},
        std::tuple{"validation", data.validation.size(0), &out.validation}}) {
    auto it = tensors->find(name);
    if (it == tensors->end()) return bad(absl::StrCat("no tensor \"", name, "\""));
    const at::Tensor& t = it->second;
    const std::vector<int64_t> want = {rows, data.train.size(1), hidden};
    if (t.sizes().vec() != want) {
      return bad(absl::StrCat("\"", name, "\" is ", model::ShapeString(t.sizes()), ", expected ",
                              model::ShapeString(want)));
    }
    *slot = t;
  }
  return out;
}

}  // namespace linearize::convert
