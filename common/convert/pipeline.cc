#include "common/convert/pipeline.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <numbers>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/convert/adamw.h"
#include "common/convert/block_inputs.h"
#include "common/convert/export.h"
#include "common/convert/fs_util.h"
#include "common/convert/init_from.h"
#include "common/convert/precision.h"
#include "common/convert/teacher.h"
#include "common/convert/tensor_file.h"
#include "common/model/recording_attention.h"
#include "common/model/softmax_attention.h"
#include "common/model/student_attention.h"
#include "nlohmann/json.hpp"

namespace linearize::convert {
namespace {

using Clock = std::chrono::steady_clock;

using model::LayerRecord;
using model::RecordingAttention;

// Everything that must survive a restart besides tensors.
struct TrainState {
  int stage = 1;  // 1, 2, 3 (trained; export left)
  int64_t step = 0;
  double lr_scale = 1;
  double best = std::numeric_limits<double>::infinity();
  int64_t since_best = 0, bad = 0;
  ConvertResult result;
};

nlohmann::json ToJson(const TrainState& s, const std::string& fingerprint) {
  const ConvertResult& r = s.result;
  nlohmann::json j;
  j["fingerprint"] = fingerprint;
  j["stage"] = s.stage;
  j["step"] = s.step;
  j["lr_scale"] = s.lr_scale;
  j["best"] = std::isfinite(s.best) ? s.best : -1.0;
  j["since_best"] = s.since_best;
  j["bad"] = s.bad;
  j["initial_val_mse"] = r.initial_val_mse;
  j["final_val_mse"] = r.final_val_mse;
  j["teacher_val_ppl"] = r.teacher_val_ppl;
  j["student_val_ppl_before_finetune"] = r.student_val_ppl_before_finetune;
  j["stage1_steps"] = r.stage1_steps;
  j["stage2_steps"] = r.stage2_steps;
  j["tokens_seen"] = r.tokens_seen;
  j["last_loss"] = r.last_loss;
  j["seconds"] = r.seconds;
  return j;
}

absl::StatusOr<TrainState> FromJson(const nlohmann::json& j, const std::string& fingerprint,
                                    const std::string& where) {
  TrainState s;
  try {
    if (j.at("fingerprint").get<std::string>() != fingerprint) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, " was made with other options (", j.at("fingerprint").get<std::string>(),
          " vs now ", fingerprint, "); resume with the same options or choose another --out"));
    }
    s.stage = j.at("stage").get<int>();
    s.step = j.at("step").get<int64_t>();
    s.lr_scale = j.at("lr_scale").get<double>();
    const double best = j.at("best").get<double>();
    s.best = best < 0 ? std::numeric_limits<double>::infinity() : best;
    s.since_best = j.at("since_best").get<int64_t>();
    s.bad = j.at("bad").get<int64_t>();
    ConvertResult& r = s.result;
    r.initial_val_mse = j.at("initial_val_mse").get<double>();
    r.final_val_mse = j.at("final_val_mse").get<double>();
    r.teacher_val_ppl = j.at("teacher_val_ppl").get<double>();
    r.student_val_ppl_before_finetune = j.at("student_val_ppl_before_finetune").get<double>();
    r.stage1_steps = j.at("stage1_steps").get<int64_t>();
    r.stage2_steps = j.at("stage2_steps").get<int64_t>();
    r.tokens_seen = j.at("tokens_seen").get<int64_t>();
    r.last_loss = j.at("last_loss").get<double>();
    r.seconds = j.at("seconds").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
  if (s.stage < 1 || s.stage > 3 || s.step < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": bad stage/step"));
  }
  return s;
}

absl::Status CheckOptions(const ConvertOptions& o) {
  if (o.teacher.empty()) return absl::InvalidArgumentError("teacher: no path given");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("out_dir: no output directory given");
  if (o.tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens (the training budget) must be > 0, got ", o.tokens));
  }
  if (o.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", o.batch_size));
  }
  if (o.grad_accum < 1) {
    return absl::InvalidArgumentError(absl::StrCat("grad_accum must be >= 1, got ", o.grad_accum));
  }
  if (o.checkpoint_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint_every must be >= 0, got ", o.checkpoint_every));
  }
  for (const auto* st : {&o.stage1, &o.stage2}) {
    const char* stage = st == &o.stage1 ? "stage 1" : "stage 2";
    if (!(st->lr > 0) || !std::isfinite(st->lr)) {
      return absl::InvalidArgumentError(absl::StrCat("learning rate must be > 0, got ", st->lr));
    }
    if (st->eval_every < 1) {
      return absl::InvalidArgumentError(absl::StrCat("eval_every must be >= 1, got ", st->eval_every));
    }
    if (!(st->warmup_fraction >= 0 && st->warmup_fraction < 1)) {
      return absl::InvalidArgumentError("warmup_fraction must be in [0, 1)");
    }
    if (!(st->weight_decay >= 0) || !(st->lr * st->weight_decay < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          stage, " weight_decay must be >= 0 with lr * weight_decay < 1, got ", st->weight_decay,
          " at lr ", st->lr));
    }
  }
  // Attention transfer learns only where keys have left the softmax window:
  // sequences that fit in it would give a loss of zero (up to rounding).
  if (o.attention.recipe != model::Recipe::kLinear) {
    const bool terrace = o.attention.recipe == model::Recipe::kLolcats && o.attention.terrace;
    const int64_t span = terrace ? 2 * o.attention.window : o.attention.window;
    if (o.data.seq_len <= span) {
      return absl::InvalidArgumentError(absl::StrCat(
          "seq_len ", o.data.seq_len, " fits in the softmax window (", span, " tokens",
          terrace ? ", terrace" : "", "): attention transfer would have nothing to learn; ",
          "use sequences longer than ", span, " tokens"));
    }
  }
  if (o.activation_checkpointing && o.lora.dropout > 0) {
    return absl::InvalidArgumentError(
        "activation_checkpointing: not with LoRA dropout (recomputed layers would draw other masks)");
  }
  if (o.block_first < 0 || o.block_count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("block_first and block_count must be >= 0, got ",
                                                   o.block_first, ", ", o.block_count));
  }
  if (o.block_count == 0 && (!o.block_inputs.empty() || !o.write_block_outputs.empty())) {
    return absl::InvalidArgumentError(
        "block_inputs / write_block_outputs: only for a block run (set block_count)");
  }
  if (o.block_count > 0 && o.attention.recipe == model::Recipe::kLinear) {
    return absl::InvalidArgumentError(
        "block_count: the linear baseline has no attention transfer to split into blocks");
  }
  if (!(o.xent_weight >= 0) || !std::isfinite(o.xent_weight)) {
    return absl::InvalidArgumentError(
        absl::StrCat("xent_weight must be >= 0 and finite, got ", o.xent_weight));
  }
  if (o.xent_weight > 0 && o.attention.recipe == model::Recipe::kLinear) {
    return absl::InvalidArgumentError(
        "xent_weight: the linear baseline has no attention transfer (stage 1) to weigh it in");
  }
  if (o.kd_weight < 0 || !(o.kd_temperature > 0)) {
    return absl::InvalidArgumentError("kd_weight must be >= 0 and kd_temperature > 0");
  }
  return absl::OkStatus();
}

std::string Fingerprint(const ConvertOptions& o) {
  return absl::StrCat("recipe=", std::string(model::RecipeName(o.attention.recipe)),
                      " F=", o.attention.feature_dim, " W=", o.attention.window,
                      " seq_len=", o.data.seq_len, " tokens=", o.tokens, " batch=", o.batch_size,
                      " accum=", o.grad_accum, " seed=", o.seed, " lora_r=", o.lora.rank,
                      // Only when set, so checkpoints from before these options still resume.
                      o.xent_weight > 0 ? absl::StrCat(" xent=", o.xent_weight) : "",
                      o.stage1.weight_decay > 0 ? absl::StrCat(" wd1=", o.stage1.weight_decay) : "",
                      o.stage2.weight_decay > 0 ? absl::StrCat(" wd2=", o.stage2.weight_decay) : "",
                      // The path as the file system names it, so a resume may spell it otherwise.
                      o.init_from.empty() ? ""
                                          : absl::StrCat(" init_from=",
                                                         RealPath(o.init_from).value_or(o.init_from)));
}

double LearningRate(const StageOptions& s, int64_t step, int64_t total, double scale) {
  const int64_t warmup = static_cast<int64_t>(s.warmup_fraction * static_cast<double>(total));
  if (step < warmup) return s.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (s.schedule == Schedule::kPlateau) return s.lr * scale;
  const double progress = static_cast<double>(step - warmup) /
                          static_cast<double>(std::max<int64_t>(1, total - warmup));
  return s.lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * progress)));
}

class Pipeline {
 public:
  Pipeline(const ConvertOptions& o, const ProgressCallback& cb) : o_(o), progress_(cb) {}
  absl::StatusOr<ConvertResult> Run();

 private:
  absl::Status Setup();
  absl::Status LoadCheckpoint();
  absl::Status SaveCheckpoint();
  // The training rows of micro-batch `micro` (int64 indices into data_.train).
  at::Tensor BatchRows(int stage, int64_t micro);
  // Stage 1's losses on `ids`, summed over the converted layers (of the
  // block): the student/teacher attention MSE and, when `with_xent`, the
  // attention cross-entropy (xent_weight in pipeline.h; undefined otherwise).
  // `block_in`: the teacher's cached stream entering the block for these
  // rows, or undefined. backward_scale > 0: each layer's objective
  // (mse_weight * MSE + xent_weight * xent) times it is back-propagated as
  // soon as the layer is done, so only one layer's graph is alive at a time
  // (layers share no trainable tensor, and the teacher's records carry no
  // graph); the sums returned are then detached.
  struct AttentionLosses {
    at::Tensor mse, xent;
  };
  AttentionLosses AttentionLoss(const at::Tensor& ids, const at::Tensor& block_in,
                                bool with_xent, double backward_scale = 0);
  double ValidationMse();
  double ValidationPerplexity(const model::LlamaModel& m);
  at::Tensor NextTokenLoss(const at::Tensor& ids);
  absl::Status TrainStage(int stage);
  // Plateau / early-stopping bookkeeping; returns whether to stop.
  bool AfterEval(const StageOptions& s, double val);
  bool Report(const char* stage, int64_t step, int64_t total, double loss,
              std::optional<double> val, Clock::time_point since, int64_t steps_since);
  void SetStudentTrainable(bool on);
  // final_: the student with the LoRA merged into its projections, exactly
  // what the exported directory loads as.
  absl::Status BuildFinalStudent();
  // A stage event outside training (its return value is not a stop request).
  void Notify(const char* stage, std::optional<double> validation = std::nullopt) {
    if (!progress_) return;
    ProgressEvent e;
    e.stage = stage;
    e.validation = validation;
    progress_(e);
  }
  NamedTensorList TrainableStudent() const;
  // Whether stage 1 trains layer l (every layer unless options name a block).
  bool InBlock(int64_t l) const {
    return o_.block_count == 0 || (l >= o_.block_first && l < o_.block_first + o_.block_count);
  }

  const ConvertOptions& o_;
  const ProgressCallback& progress_;
  c10::Device device_ = c10::Device(c10::kCPU);
  Teacher teacher_;
  std::unique_ptr<model::LlamaModel> final_;  // the merged student, once trained
  std::unique_ptr<model::LlamaModel> student_;
  std::vector<model::StudentTensors> students_;  // per layer (empty: softmax)
  std::vector<LayerRecord> records_;
  std::optional<BlockInputs> block_inputs_;  // ConvertOptions::block_inputs, read
  bool block_only_ = false;  // the teacher holds only the block's layers (Setup)
  std::shared_ptr<model::LoraAdapters> lora_;
  std::unique_ptr<AdamW> adam_;
  TokenData data_;
  TrainState st_;
  std::string ckpt_dir_;
  std::string fingerprint_;
  int64_t steps1_ = 0, steps2_ = 0, tokens_per_step_ = 0;
  std::map<std::pair<int, int64_t>, std::vector<int64_t>> perms_;
  std::map<std::string, at::Tensor> pending_adam_;  // from a checkpoint
  int64_t pending_adam_steps_ = 0;
  double seconds_before_ = 0;
  Clock::time_point start_ = Clock::now();
};

absl::Status Pipeline::Setup() {
  if (absl::Status s = CheckOptions(o_); !s.ok()) return s;
  if (PathExists(o_.out_dir) && !IsDirectory(o_.out_dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("out_dir ", o_.out_dir, " exists and is not a directory"));
  }
  absl::StatusOr<c10::Device> device = ParseTrainingDevice(o_.device);
  if (!device.ok()) return device.status();
  device_ = *device;
  if (device_.is_cuda()) at::globalContext().setFloat32MatmulPrecision(o_.tf32 ? "high" : "highest");
  model::WeightOptions weights;
  weights.dtype = o_.bf16 ? at::kBFloat16 : at::kFloat;
  weights.device = device_;
  // A block run from cached inputs runs only its own layers of the teacher,
  // so it loads only those, unless it needs the whole teacher for its data
  // (self-distillation samples them; a resumed run has them in its
  // checkpoint) or for the teacher's perplexity (the checkpoint or the
  // inputs, when a block run wrote them, hold it).
  block_only_ = o_.block_count > 0 && !o_.block_inputs.empty() &&
                (o_.resume ||
                 (!o_.data.files.empty() && StoredTeacherPerplexity(o_.block_inputs) > 0));
  std::optional<model::LayerRange> layers;
  if (block_only_) layers = model::LayerRange{o_.block_first, o_.block_count};
  absl::StatusOr<Teacher> teacher = LoadTeacher(o_.teacher, weights, layers);
  if (!teacher.ok()) return teacher.status();
  teacher_ = *std::move(teacher);
  if (PathExists(o_.out_dir) && IsDirectory(o_.teacher) &&
      RealPath(o_.out_dir).value_or("a") == RealPath(o_.teacher).value_or("b")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "out_dir ", o_.out_dir, " is the teacher's directory; choose another output"));
  }
  const io::ModelConfig& c = teacher_.loaded.config;
  if (absl::Status s = model::ValidateLinearAttentionConfig(o_.attention, c); !s.ok()) return s;
  if (o_.block_count > 0 && o_.block_first + o_.block_count > c.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block [", o_.block_first, ", ", o_.block_first + o_.block_count, ") is outside the ",
        c.num_hidden_layers, " layers of ", o_.teacher));
  }
  fingerprint_ = absl::StrCat(Fingerprint(o_), " teacher=", teacher_.identity);
  ckpt_dir_ = o_.out_dir + "/checkpoint";
  // A run killed between the two renames of SaveCheckpoint leaves only the
  // previous checkpoint, as <ckpt>.old: take it back.
  if (!PathExists(ckpt_dir_) && PathExists(ckpt_dir_ + ".old/state.json")) {
    if (absl::Status s = Rename(ckpt_dir_ + ".old", ckpt_dir_); !s.ok()) return s;
  }
  if (!o_.resume && PathExists(ckpt_dir_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        ckpt_dir_, " already holds a checkpoint; resume it (--resume) or choose another output"));
  }
  if (o_.resume && !PathExists(ckpt_dir_ + "/state.json")) {
    return absl::NotFoundError(absl::StrCat("nothing to resume: ", ckpt_dir_,
                                            "/state.json does not exist"));
  }

  // The student shares the teacher's weights; converted layers get student attention.
  absl::StatusOr<std::unique_ptr<model::LlamaModel>> student =
      model::LlamaModel::Create(c, teacher_.loaded.model->weights());
  if (!student.ok()) return student.status();
  student_ = *std::move(student);
  student_->SetActivationCheckpointing(o_.activation_checkpointing);
  students_.resize(static_cast<size_t>(c.num_hidden_layers));
  records_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!model::IsConverted(o_.attention, l)) continue;
    // Only the block trains; each layer's initialisation has its own seed.
    if (block_only_ && !InBlock(l)) continue;
    model::StudentTensors t = model::InitStudentTensors(o_.attention, c, l, o_.seed);
    for (auto& [name, tensor] : t) tensor = tensor.to(device_);
    students_[static_cast<size_t>(l)] = t;
    absl::StatusOr<std::unique_ptr<model::StudentAttention>> a =
        model::MakeStudentAttention(o_.attention, c, std::move(t));
    if (!a.ok()) return a.status();
    student_->SetAttention(l, *std::move(a));
    teacher_.loaded.model->SetAttention(
        l, RecordingAttention::Softmax(c, &records_[static_cast<size_t>(l)]));
  }
  absl::StatusOr<model::LoraAdapters> lora =
      model::NewLoraAdapters(c, o_.lora, o_.seed + 17, device_);
  if (!lora.ok()) return lora.status();
  lora_ = std::make_shared<model::LoraAdapters>(*std::move(lora));
  if (!o_.init_from.empty() && !o_.resume) {
    absl::StatusOr<StudentInit> init =
        ReadStudentInit(o_.init_from, o_.teacher, o_.attention, c, device_);
    if (!init.ok()) return init.status();
    if (absl::Status s = CopyStudentInit(*init, o_.init_from, &students_, lora_.get()); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

NamedTensorList Pipeline::TrainableStudent() const {
  NamedTensorList out;
  for (size_t l = 0; l < students_.size(); ++l) {
    if (!InBlock(static_cast<int64_t>(l))) continue;
    for (const auto& [name, t] : students_[l]) out.emplace_back(absl::StrCat(l, ".", name), t);
  }
  return out;
}

void Pipeline::SetStudentTrainable(bool on) {
  for (auto& layer : students_) {
    for (auto& [name, t] : layer) t.set_requires_grad(on);
  }
}

at::Tensor Pipeline::BatchRows(int stage, int64_t micro) {
  const int64_t n = data_.train.size(0);
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < o_.batch_size; ++b) {
    const int64_t idx = micro * o_.batch_size + b;
    const int64_t epoch = idx / n;
    auto [it, fresh] = perms_.try_emplace({stage, epoch});
    if (fresh) {
      it->second.resize(static_cast<size_t>(n));
      std::iota(it->second.begin(), it->second.end(), 0);
      std::mt19937_64 rng(o_.seed * 1000003ULL + static_cast<uint64_t>(stage) * 7777ULL +
                          static_cast<uint64_t>(epoch));
      std::shuffle(it->second.begin(), it->second.end(), rng);
    }
    rows.push_back(it->second[static_cast<size_t>(idx % n)]);
  }
  return at::tensor(rows, at::kLong);
}

Pipeline::AttentionLosses Pipeline::AttentionLoss(const at::Tensor& ids,
                                                  const at::Tensor& block_in, bool with_xent,
                                                  double backward_scale) {
  {
    // The teacher's forward fills records_; a block needs only its layers
    // (from cached inputs) or the layers up to its end.
    const AutocastScope autocast(device_, o_.bf16);
    at::NoGradGuard no_grad;
    const model::LlamaModel& t = *teacher_.loaded.model;
    const absl::StatusOr<at::Tensor> h =
        o_.block_count == 0
            ? t.ForwardHidden(ids)
            : TeacherStream(t, ids, block_in, block_in.defined() ? o_.block_first : 0,
                            o_.block_first + o_.block_count);
    TORCH_CHECK(h.ok(), std::string(h.status().message()));
  }
  const at::Tensor zero = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(ids.device()));
  AttentionLosses loss{zero, with_xent ? zero : at::Tensor()};
  for (int64_t l = 0; l < student_->num_layers(); ++l) {
    if (!model::IsConverted(o_.attention, l) || !InBlock(l)) continue;
    const LayerRecord& r = records_[static_cast<size_t>(l)];
    at::Tensor mse, xent;
    {  // forward under autocast; backward (below) outside it, as in stage 2
      const AutocastScope autocast(device_, o_.bf16);
      const model::AttentionLayer& student = student_->attention(l);
      const at::Tensor y = student.Forward(r.in, nullptr, 0);
      mse = at::mse_loss(y.to(at::kFloat), r.out.to(at::kFloat));
      if (with_xent) {
        at::Tensor p;
        {
          at::NoGradGuard no_grad;
          p = model::SoftmaxAttentionWeights(r.in.q, r.in.k,
                                             teacher_.loaded.config.sliding_window);
        }
        const auto* converted = dynamic_cast<const model::StudentAttention*>(&student);
        TORCH_CHECK(converted != nullptr, "layer ", l, " is not a student attention");
        // Negative entries (Lizard with alpha < 0) count as 0, with no gradient.
        at::Tensor w = converted->AttentionWeights(r.in).to(at::kFloat).clamp_min(0);
        w = w / w.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
        // Above the diagonal both are 0 (0 * log 1e-30 = 0).
        xent = -(p * at::log(w.clamp_min(1e-30))).sum(-1).mean();
      }
    }
    if (backward_scale > 0) {
      at::Tensor objective = mse * o_.mse_weight;
      if (xent.defined()) objective = objective + xent * o_.xent_weight;
      (objective * backward_scale).backward();
      mse = mse.detach();
      if (xent.defined()) xent = xent.detach();
    }
    loss.mse = loss.mse + mse;
    if (xent.defined()) loss.xent = loss.xent + xent;
  }
  return loss;
}

double Pipeline::ValidationMse() {
  at::NoGradGuard no_grad;
  double sum = 0;
  int64_t rows = 0;
  const int64_t n = data_.validation.size(0);
  for (int64_t i = 0; i < n; i += o_.batch_size) {
    const int64_t b = std::min(o_.batch_size, n - i);
    const at::Tensor ids = data_.validation.narrow(0, i, b).to(device_);
    const at::Tensor block_in =
        block_inputs_ ? block_inputs_->validation.narrow(0, i, b) : at::Tensor();
    sum += AttentionLoss(ids, block_in, /*with_xent=*/false).mse.item<double>() *
           static_cast<double>(b);
    rows += b;
  }
  return sum / static_cast<double>(rows);
}

double Pipeline::ValidationPerplexity(const model::LlamaModel& m) {
  at::NoGradGuard no_grad;
  const AutocastScope autocast(device_, o_.bf16);
  double nll = 0;
  int64_t count = 0;
  const int64_t n = data_.validation.size(0);
  for (int64_t i = 0; i < n; i += o_.batch_size) {
    const int64_t b = std::min(o_.batch_size, n - i);
    const at::Tensor ids = data_.validation.narrow(0, i, b).to(m.device());
    absl::StatusOr<at::Tensor> logits = m.Forward(ids);
    TORCH_CHECK(logits.ok(), std::string(logits.status().message()));
    const int64_t t = ids.size(1);
    const at::Tensor lp = logits->narrow(1, 0, t - 1).reshape({-1, logits->size(2)});
    nll += at::cross_entropy_loss(lp, ids.narrow(1, 1, t - 1).reshape({-1}), {},
                                  at::Reduction::Sum)
               .item<double>();
    count += b * (t - 1);
  }
  return std::exp(nll / static_cast<double>(count));
}

at::Tensor Pipeline::NextTokenLoss(const at::Tensor& ids) {
  const AutocastScope autocast(device_, o_.bf16);
  absl::StatusOr<at::Tensor> logits = student_->Forward(ids);
  TORCH_CHECK(logits.ok(), std::string(logits.status().message()));
  const int64_t t = ids.size(1), v = logits->size(2);
  const at::Tensor s = logits->narrow(1, 0, t - 1).reshape({-1, v});
  at::Tensor loss = at::cross_entropy_loss(s, ids.narrow(1, 1, t - 1).reshape({-1}));
  if (o_.kd_weight > 0) {
    at::Tensor teacher_logits;
    {
      at::NoGradGuard no_grad;
      absl::StatusOr<at::Tensor> tl = teacher_.loaded.model->Forward(ids);
      TORCH_CHECK(tl.ok(), std::string(tl.status().message()));
      teacher_logits = tl->narrow(1, 0, t - 1).reshape({-1, v});
    }
    const double temp = o_.kd_temperature;
    const at::Tensor kl = at::kl_div(at::log_softmax(s / temp, -1),
                                     at::log_softmax(teacher_logits / temp, -1),
                                     at::Reduction::Mean, /*log_target=*/true) *
                          static_cast<double>(v);  // kl_div's mean is per element
    loss = loss + o_.kd_weight * temp * temp * kl;
  }
  return loss;
}

bool Pipeline::AfterEval(const StageOptions& s, double val) {
  if (val < st_.best * (1 - 1e-4)) {
    st_.best = val;
    st_.since_best = 0;
    st_.bad = 0;
    return false;
  }
  ++st_.since_best;
  if (s.schedule == Schedule::kPlateau && ++st_.bad > s.plateau_patience) {
    st_.lr_scale *= 0.1;
    st_.bad = 0;
  }
  return s.early_stop_patience > 0 && st_.since_best >= s.early_stop_patience;
}

bool Pipeline::Report(const char* stage, int64_t step, int64_t total, double loss,
                      std::optional<double> val, Clock::time_point since, int64_t steps_since) {
  if (!progress_) return true;
  ProgressEvent e;
  e.stage = stage;
  e.step = step;
  e.total = total;
  e.loss = loss;
  e.validation = val;
  const double secs = std::chrono::duration<double>(Clock::now() - since).count();
  if (steps_since > 0 && secs > 0) {
    e.tokens_per_second = static_cast<double>(steps_since * tokens_per_step_) / secs;
    e.eta_seconds = secs / static_cast<double>(steps_since) * static_cast<double>(total - step);
  }
  return progress_(e);
}


absl::Status Pipeline::TrainStage(int stage) {
  const StageOptions& so = stage == 1 ? o_.stage1 : o_.stage2;
  const int64_t total = stage == 1 ? steps1_ : steps2_;
  SetStudentTrainable(stage == 1);
  for (auto& [name, t] : lora_->Named()) t.set_requires_grad(stage == 2);
  AdamWOptions adam_options;
  adam_options.clip_per_prefix = stage == 1;  // each layer's transfer clips on its own
  adam_options.weight_decay = so.weight_decay;
  adam_ = std::make_unique<AdamW>(stage == 1 ? TrainableStudent() : lora_->Named(), adam_options);
  if (!pending_adam_.empty()) {
    NamedTensorList state;
    for (const auto& [name, t] : adam_->State()) {
      const auto it = pending_adam_.find("adam/" + name);
      if (it == pending_adam_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(ckpt_dir_, ": missing optimizer tensor adam/", name));
      }
      state.emplace_back(name, it->second.to(t.device()));
    }
    if (absl::Status s = adam_->Restore(state, pending_adam_steps_); !s.ok()) return s;
    pending_adam_.clear();
  }
  const char* name = stage == 1 ? "attention_transfer" : "finetune";
  const Clock::time_point since = Clock::now();
  int64_t done_here = 0;
  while (st_.step < total) {
    double loss_sum = 0;
    for (int64_t a = 0; a < o_.grad_accum; ++a) {
      const int64_t micro = st_.step * o_.grad_accum + a;
      const at::Tensor rows = BatchRows(stage, micro);
      const at::Tensor ids = data_.train.index_select(0, rows).to(device_);
      if (stage == 1) {
        const at::Tensor block_in =
            block_inputs_ ? block_inputs_->train.index_select(0, rows) : at::Tensor();
        // Back-propagated layer by layer inside.
        const AttentionLosses l = AttentionLoss(ids, block_in, o_.xent_weight > 0,
                                                1.0 / static_cast<double>(o_.grad_accum));
        // Reported: the summed MSE (what validation tracks), also with xent.
        loss_sum += l.mse.item<double>() / static_cast<double>(o_.grad_accum);
      } else {
        if (o_.lora.dropout > 0) {
          // Dropout masks are a function of (seed, micro-batch), so a resumed
          // run draws the same ones without saving generator state.
          at::Generator gen = at::globalContext().defaultGenerator(device_);
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_current_seed(o_.seed * 1000003ULL + static_cast<uint64_t>(micro));
        }
        lora_->training = true;
        const at::Tensor loss = NextTokenLoss(ids);
        lora_->training = false;
        loss_sum += loss.item<double>() / static_cast<double>(o_.grad_accum);
        (loss / static_cast<double>(o_.grad_accum)).backward();
      }
    }
    adam_->Step(LearningRate(so, st_.step, total, st_.lr_scale));
    ++st_.step;
    ++done_here;
    (stage == 1 ? st_.result.stage1_steps : st_.result.stage2_steps) = st_.step;
    st_.result.tokens_seen += tokens_per_step_;
    st_.result.last_loss = loss_sum;
    std::optional<double> val;
    if (st_.step % so.eval_every == 0 || st_.step == total) {
      val = stage == 1 ? ValidationMse() : std::log(ValidationPerplexity(*student_));
      if (AfterEval(so, *val)) st_.step = total;  // early stop (stageN_steps keeps the count)
    }
    if (stage == 2 && val) val = std::exp(*val);
    const bool go = Report(name, st_.step, total, loss_sum, val, since, done_here);
    if (!go || (o_.checkpoint_every > 0 && st_.step % o_.checkpoint_every == 0)) {
      if (absl::Status s = SaveCheckpoint(); !s.ok()) return s;
    }
    if (!go) {
      return absl::CancelledError(absl::StrCat("stopped during ", name, " at step ", st_.step,
                                               " of ", total, "; checkpoint in ", ckpt_dir_,
                                               " (resume to continue)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Pipeline::SaveCheckpoint() {
  NamedTensorList tensors;
  for (const auto& [name, t] : TrainableStudent()) tensors.emplace_back("student/" + name, t);
  for (const auto& [name, t] : lora_->Named()) tensors.emplace_back("lora/" + name, t);
  if (adam_ != nullptr && st_.stage <= 2) {
    for (const auto& [name, t] : adam_->State()) tensors.emplace_back("adam/" + name, t);
  }
  tensors.emplace_back("data/train", data_.train);
  tensors.emplace_back("data/validation", data_.validation);
  const std::string tmp = ckpt_dir_ + ".tmp";
  const std::string old = ckpt_dir_ + ".old";
  if (absl::Status s = RemoveTree(tmp); !s.ok()) return s;
  if (absl::Status s = MakeDirs(tmp); !s.ok()) return s;
  // A failed write (a full disk) removes the partial new checkpoint and
  // leaves the previous one as it was.
  auto abandon = [&](absl::Status s) {
    (void)RemoveTree(tmp);
    return absl::Status(s.code(), absl::StrCat("saving the checkpoint ", ckpt_dir_,
                                               " (the previous one is kept): ", s.message()));
  };
  if (absl::Status s = WriteTensorFile(tmp + "/tensors.safetensors", tensors); !s.ok()) {
    return abandon(s);
  }
  nlohmann::json j = ToJson(st_, fingerprint_);
  j["adam_steps"] = adam_ != nullptr ? adam_->steps() : 0;
  j["seconds"] = seconds_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
  j["data_source"] = data_.source;
  if (absl::Status s = WriteFileAtomic(tmp + "/state.json", j.dump(2) + "\n"); !s.ok()) {
    return abandon(s);
  }
  // Swap in: the previous checkpoint stays complete until the new one is.
  if (absl::Status s = RemoveTree(old); !s.ok()) return s;
  if (PathExists(ckpt_dir_)) {
    if (absl::Status s = Rename(ckpt_dir_, old); !s.ok()) return s;
  }
  if (absl::Status s = Rename(tmp, ckpt_dir_); !s.ok()) return s;
  return RemoveTree(old);
}

absl::Status Pipeline::LoadCheckpoint() {
  const std::string where = ckpt_dir_ + "/state.json";
  absl::StatusOr<std::string> text = ReadFile(where);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  absl::StatusOr<TrainState> st = FromJson(j, fingerprint_, where);
  if (!st.ok()) return st.status();
  st_ = *std::move(st);
  pending_adam_steps_ = j.value("adam_steps", int64_t{0});
  seconds_before_ = st_.result.seconds;
  data_.source = j.value("data_source", std::string());
  absl::StatusOr<std::map<std::string, at::Tensor>> tensors =
      ReadTensorFile(ckpt_dir_ + "/tensors.safetensors");
  if (!tensors.ok()) return tensors.status();
  auto take = [&](const std::string& name, at::Tensor* into) -> absl::Status {
    const auto it = tensors->find(name);
    if (it == tensors->end()) {
      return absl::InvalidArgumentError(absl::StrCat(ckpt_dir_, ": missing tensor ", name));
    }
    if (into->defined()) {
      if (it->second.sizes() != into->sizes()) {
        return absl::InvalidArgumentError(absl::StrCat(ckpt_dir_, ": tensor ", name, " has shape ",
                                                       model::ShapeString(it->second.sizes()),
                                                       ", expected ",
                                                       model::ShapeString(into->sizes())));
      }
      at::NoGradGuard no_grad;
      into->copy_(it->second);
    } else {
      *into = it->second;
    }
    return absl::OkStatus();
  };
  if (absl::Status s = take("data/train", &data_.train); !s.ok()) return s;
  if (absl::Status s = take("data/validation", &data_.validation); !s.ok()) return s;
  for (auto& [name, t] : TrainableStudent()) {
    if (absl::Status s = take("student/" + name, &t); !s.ok()) return s;
  }
  for (auto& [name, t] : lora_->Named()) {
    if (absl::Status s = take("lora/" + name, &t); !s.ok()) return s;
  }
  for (auto& [name, t] : *tensors) {
    if (name.starts_with("adam/")) pending_adam_.emplace(name, t);
  }
  if (data_.train.dim() != 2 || data_.train.size(1) != o_.data.seq_len ||
      data_.validation.dim() != 2 || data_.validation.size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(ckpt_dir_, ": data tensors do not match seq_len ",
                                                   o_.data.seq_len));
  }
  st_.result.resumed = true;
  return absl::OkStatus();
}

absl::Status Pipeline::BuildFinalStudent() {
  at::NoGradGuard no_grad;
  const io::ModelConfig& c = teacher_.loaded.config;
  model::ModelWeights w = teacher_.loaded.model->weights();  // shares the tensors
  for (size_t l = 0; l < lora_->layers.size() && l < w.layers.size(); ++l) {
    model::LayerWeights& lw = w.layers[l];
    at::Tensor* slots[model::kNumLoraTargets] = {&lw.q_proj, &lw.k_proj, &lw.v_proj, &lw.o_proj};
    for (int t = 0; t < model::kNumLoraTargets; ++t) {
      const model::LoraPair& pair = lora_->layers[l][static_cast<size_t>(t)];
      if (pair.a.defined()) *slots[t] = model::MergeLora(*slots[t], pair, lora_->scale).contiguous();
    }
  }
  absl::StatusOr<std::unique_ptr<model::LlamaModel>> m = model::LlamaModel::Create(c, std::move(w));
  if (!m.ok()) return m.status();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!model::IsConverted(o_.attention, l)) continue;
    model::StudentTensors t;
    for (const auto& [name, tensor] : students_[static_cast<size_t>(l)]) t.emplace(name, tensor.detach());
    absl::StatusOr<std::unique_ptr<model::StudentAttention>> a =
        model::MakeStudentAttention(o_.attention, c, std::move(t));
    if (!a.ok()) return a.status();
    (*m)->SetAttention(l, *std::move(a));
  }
  final_ = *std::move(m);
  return absl::OkStatus();
}

absl::StatusOr<ConvertResult> Pipeline::Run() {
  if (absl::Status s = Setup(); !s.ok()) return s;
  try {
    if (o_.resume) {
      if (absl::Status s = LoadCheckpoint(); !s.ok()) return s;
      if (block_only_ && st_.stage != 1) {
        return absl::FailedPreconditionError(absl::StrCat(
            ckpt_dir_, " is past stage 1 (stage ", st_.stage,
            "): a block run from block_inputs only resumes attention transfer"));
      }
    } else {
      Notify("data");
      absl::StatusOr<TokenData> data = BuildTokenData(teacher_.loaded, o_.data);
      if (!data.ok()) return data.status();
      data_ = *std::move(data);
      if (absl::Status s = MakeDirs(o_.out_dir); !s.ok()) return s;
      if (o_.attention.recipe == model::Recipe::kLinear) st_.stage = 2;
    }
    if (!o_.block_inputs.empty()) {
      absl::StatusOr<BlockInputs> in = ReadBlockInputs(
          o_.block_inputs, o_.block_first, teacher_.loaded.config.hidden_size, data_);
      if (!in.ok()) return in.status();
      block_inputs_ = *std::move(in);
      if (block_only_ && !o_.resume && !(block_inputs_->teacher_val_ppl > 0)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "block inputs ", o_.block_inputs, ": teacher_val_ppl vanished while the run started"));
      }
    }
    tokens_per_step_ = o_.batch_size * o_.grad_accum * o_.data.seq_len;
    const bool transfer = o_.attention.recipe != model::Recipe::kLinear;
    const int64_t tokens1 = transfer ? o_.tokens / 2 : 0;
    steps1_ = transfer ? std::max<int64_t>(1, tokens1 / tokens_per_step_) : 0;
    steps2_ = std::max<int64_t>(1, (o_.tokens - tokens1) / tokens_per_step_);
    ConvertResult& r = st_.result;
    r.teacher_parameters =
        model::ParameterCount(teacher_.loaded.config, teacher_.loaded.model->weights());
    if (!o_.resume) {
      // A block-only teacher cannot score tokens; the inputs' writer did.
      r.teacher_val_ppl = block_only_ ? block_inputs_->teacher_val_ppl
                                      : ValidationPerplexity(*teacher_.loaded.model);
      r.initial_val_mse = ValidationMse();
      r.final_val_mse = r.initial_val_mse;
      if (!transfer) r.student_val_ppl_before_finetune = ValidationPerplexity(*student_);
      Notify("evaluate", r.initial_val_mse);
    }
    if (st_.stage == 1) {
      if (absl::Status s = TrainStage(1); !s.ok()) return s;
      r.final_val_mse = ValidationMse();
      if (o_.block_count > 0) {  // a block's stage 1 ends the run (block_merge.h)
        if (!o_.write_block_outputs.empty()) {
          Notify("block_outputs");
          const AutocastScope autocast(device_, o_.bf16);
          absl::StatusOr<BlockInputs> next = ComputeBlockInputs(
              *teacher_.loaded.model, data_, o_.block_first + o_.block_count, o_.batch_size,
              block_inputs_ ? &*block_inputs_ : nullptr);
          if (!next.ok()) return next.status();
          next->teacher_val_ppl = r.teacher_val_ppl;  // lets the next block load only its layers
          if (absl::Status s = WriteBlockInputs(o_.write_block_outputs, *next, data_); !s.ok()) {
            return s;
          }
        }
        r.seconds = seconds_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
        if (absl::Status s = SaveCheckpoint(); !s.ok()) return s;
        r.out_dir = o_.out_dir;
        return r;
      }
      r.student_val_ppl_before_finetune = ValidationPerplexity(*student_);
      st_.stage = 2;
      st_.step = 0;
      st_.lr_scale = 1;
      st_.best = std::numeric_limits<double>::infinity();
      st_.since_best = st_.bad = 0;
      adam_.reset();
    }
    student_->SetLora(lora_);
    if (st_.stage == 2) {
      if (absl::Status s = TrainStage(2); !s.ok()) return s;
      st_.stage = 3;
      adam_.reset();
    }
    SetStudentTrainable(false);
    if (absl::Status s = BuildFinalStudent(); !s.ok()) return s;
    r.student_val_ppl = ValidationPerplexity(*final_);
    r.seconds = seconds_before_ + std::chrono::duration<double>(Clock::now() - start_).count();
    if (absl::Status s = SaveCheckpoint(); !s.ok()) return s;
    Notify("export");
    ExportInputs ex;
    ex.teacher = &teacher_;
    ex.options = &o_;
    ex.student = final_.get();
    ex.students = students_;
    ex.lora = lora_.get();
    ex.result = &r;
    ex.data_source = data_.source;
    if (absl::Status s = ExportModel(ex, o_.out_dir); !s.ok()) return s;
    r.out_dir = o_.out_dir;
    return r;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("conversion failed: ", e.what_without_backtrace()));
  }
}

}  // namespace

absl::StatusOr<ConvertResult> Convert(const ConvertOptions& options,
                                      const ProgressCallback& progress) {
  Pipeline p(options, progress);
  return p.Run();
}

}  // namespace linearize::convert
