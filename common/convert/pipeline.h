// The conversion pipeline: teacher -> linear-attention student.
//   stage 1 (attention transfer): the teacher stays frozen; for every
//     converted layer the student attention reads the teacher's own q/k/v
//     (and hidden states) and is trained so its output matches the teacher's
//     softmax output: loss = mse_weight * sum over layers of the MSE
//     (+ xent_weight * the cross-entropy between the teacher's softmax
//     weights and the student's, as the LoLCATs code offers). Only
//     feature maps, window factors, gates, meta logits and alpha train.
//     Validation MSE is checked every eval_every steps (reduce-on-plateau or
//     cosine schedule; early stopping).
//   stage 2 (LoRA): adapters on the attention projections, next-token loss
//     (+ optional KD from the teacher's logits).
// Checkpoints (trainable tensors, AdamW state, schedule state, data and the
// step cursor; dropout is reseeded from (seed, step), so no other RNG state
// exists) go to <out>/checkpoint every checkpoint_every steps and when the
// progress callback asks to stop; a resumed run takes the same steps as an
// uninterrupted one, bit for bit; a checkpoint holds no teacher weights
// (it names the teacher, whose path and size must not change). The result is
// a self-contained Hugging Face directory in <out> (export.h) that
// model::LoadModel serves: the loaded model computes exactly the logits of
// the final student whose validation perplexity ConvertResult reports.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/convert/data.h"
#include "common/model/linear_attention_config.h"
#include "common/model/lora.h"

namespace linearize::convert {

enum class Schedule { kCosine, kPlateau };

struct StageOptions {
  double lr = 1e-2;
  Schedule schedule = Schedule::kPlateau;
  double warmup_fraction = 0.0;  // of the stage's steps, linear warm-up
  int64_t eval_every = 50;       // steps between validations (and plateau checks)
  int64_t plateau_patience = 2;  // evaluations without improvement before lr *= 0.1
  int64_t early_stop_patience = 5;  // evaluations without improvement before stopping; 0: off
  // AdamW's decoupled weight decay (p -= lr * wd * p) on every tensor the
  // stage trains (stage 1: maps, gates, sinks, alpha too); >= 0.
  double weight_decay = 0;
};

struct ConvertOptions {
  // Hugging Face directory (config.json + safetensors) or GGUF file (e.g.
  // the embedded default model, model::FindDefaultModel()).
  std::string teacher;
  model::LinearAttentionConfig attention;  // recipe and sizes
  DataOptions data;
  // Training tokens over both stages (half each; all to stage 2 for the
  // linear baseline, which has nothing to transfer). > 0.
  int64_t tokens = 20'000'000;
  int64_t batch_size = 8;  // sequences per micro-batch
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  StageOptions stage1;     // lr 1e-2, reduce-on-plateau (LoLCATs)
  double mse_weight = 1000;
  // Stage 1: weight of the attention cross-entropy, summed over layers: for
  // each query, -sum_j p_ij log q_ij with p the teacher's softmax weights and
  // q the student's explicit matrix (StudentAttention::AttentionWeights,
  // negative entries taken as 0 and rows renormalised: Lizard's sum to about
  // 1 + alpha), averaged over queries and heads. It materialises [B, H, T, T] per layer (memory grows
  // with T^2); 0: off. Validation (early stopping) stays on the MSE.
  double xent_weight = 0;
  StageOptions stage2 = {1e-4, Schedule::kCosine, 0.05, 50, 2, 0};
  model::LoraOptions lora;   // r 8, alpha 16, dropout 0, q/k/v/o; merged on export
  bool peft = false;         // also write the LoRA as a PEFT adapter (<out>/adapter)
  double kd_weight = 0;      // stage 2: weight of KL(teacher || student); 0: off
  double kd_temperature = 1;
  int64_t checkpoint_every = 100;  // optimizer steps; 0: only when stopped
  // Where training runs: "cpu", "cuda" or "cuda:N" (the teacher is loaded
  // there). bf16: the teacher's weights in bfloat16 and every forward under
  // bf16 autocast, while the trainable tensors, the LoRA and the optimizer
  // state stay float32. tf32: on CUDA, float32 matrix products may use TF32.
  std::string device = "cpu";
  bool bf16 = false;
  bool tf32 = true;
  // Stage 2 recomputes each decoder layer's activations in the backward pass
  // instead of keeping them (less memory, about one more forward of compute;
  // the same losses). Not with LoRA dropout.
  bool activation_checkpointing = false;
  // Blockwise attention transfer: when block_count > 0, stage 1 trains only
  // layers [block_first, block_first + block_count) and the run ends after
  // stage 1 with its checkpoint (no stage 2, no export). The checkpoints of
  // blocks that cover the model merge into one stage-1 result
  // (block_merge.h), from which a run with the same options and no block
  // resumes into stage 2. Per-layer transfer is independent, so with a
  // schedule that does not look at the summed validation loss (cosine, no
  // early stopping) the merged result equals a whole-model stage 1.
  int64_t block_first = 0;
  int64_t block_count = 0;
  // With a block: a file of the teacher's residual stream entering
  // block_first for every sequence (block_inputs.h), so that each step runs
  // only the block's layers of the teacher; and a file to write the stream
  // leaving the block into once stage 1 is done (the next block's inputs).
  // Such a run loads only the block's layers of the teacher when nothing
  // else needs the rest: its data come from files or its checkpoint (not
  // sampled from the teacher) and its inputs record the teacher's
  // perplexity (files written by a block run do); the results are the same.
  std::string block_inputs;
  std::string write_block_outputs;
  // A student converted before (its output directory or a delta) whose
  // attention tensors and LoRA replace the fresh initialisation; both stages
  // train on from there (init_from.h says what must match). Read by a fresh
  // run only: a resumed run has them in its checkpoint.
  std::string init_from;
  std::string out_dir;
  bool resume = false;  // continue from <out>/checkpoint
  uint64_t seed = 0;
};

struct ProgressEvent {
  std::string stage;  // "data", "attention_transfer", "finetune", "evaluate", "block_outputs",
                      // "export"
  int64_t step = 0;   // optimizer steps done in this stage
  int64_t total = 0;  // planned steps of this stage
  double tokens_per_second = 0;
  double loss = 0;          // last step's training loss (0 outside training)
  double eta_seconds = 0;   // for this stage
  std::optional<double> validation;  // set on evaluation steps (MSE or perplexity)
};
// Return false to stop: the pipeline checkpoints and returns CANCELLED.
using ProgressCallback = std::function<bool(const ProgressEvent&)>;

struct ConvertResult {
  std::string out_dir;
  double initial_val_mse = 0, final_val_mse = 0;  // stage 1 (0 for the linear baseline)
  double teacher_val_ppl = 0;
  double student_val_ppl_before_finetune = 0, student_val_ppl = 0;
  int64_t stage1_steps = 0, stage2_steps = 0;
  int64_t tokens_seen = 0;
  double last_loss = 0;  // the final optimizer step's training loss
  double seconds = 0;
  bool resumed = false;
  // Elements of the teacher's weights this run loaded (a block run from
  // cached inputs: its block's layers only).
  int64_t teacher_parameters = 0;
};

// INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION for bad options, an
// unusable teacher or data (naming what is wrong; nothing is written);
// CANCELLED when the callback stopped it (a checkpoint was written). An
// existing checkpoint is only replaced by a newer complete one.
absl::StatusOr<ConvertResult> Convert(const ConvertOptions& options,
                                      const ProgressCallback& progress = nullptr);

}  // namespace linearize::convert
