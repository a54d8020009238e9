#include "services/cli/convert_command.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/convert/block_merge.h"
#include "common/convert/pipeline.h"
#include "common/model/load.h"

namespace linearize::cli {
namespace {

// Set by SIGINT/SIGTERM: the pipeline then checkpoints and stops, so that
// `--resume` continues where it was interrupted.
volatile std::sig_atomic_t g_stop_requested = 0;
void RequestStop(int) { g_stop_requested = 1; }

std::string Duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  return absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

// One line per event; on a terminal the line is redrawn in place.
class ProgressBar {
 public:
  ProgressBar() : tty_(::isatty(STDERR_FILENO) != 0) {}
  ~ProgressBar() { Finish(); }

  void Show(const convert::ProgressEvent& e) {
    if (e.stage != stage_) {
      Finish();
      stage_ = e.stage;
    }
    std::string line;
    if (e.total > 0) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(kWidth * e.step / e.total);
      line = absl::StrFormat("%-18s [%s%s] %d/%d loss %.4g %.0f tok/s ETA %s", e.stage,
                             std::string(static_cast<size_t>(filled), '#'),
                             std::string(static_cast<size_t>(kWidth - filled), '.'), e.step,
                             e.total, e.loss, e.tokens_per_second, Duration(e.eta_seconds));
    } else {
      line = absl::StrFormat("%-18s", e.stage);
    }
    if (e.validation) absl::StrAppendFormat(&line, " val %.5g", *e.validation);
    if (tty_) {
      std::fprintf(stderr, "\r%-110s", line.c_str());
      open_ = true;
      if (e.validation && e.total > 0) Finish();  // keep evaluation lines
    } else if (e.validation || e.total == 0 || e.step == e.total || e.step % 10 == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

  void Finish() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
  }

 private:
  bool tty_;
  bool open_ = false;
  std::string stage_;
};

}  // namespace

CLI::App* AddConvertCommand(CLI::App& app, ConvertArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "convert", "Convert a softmax-attention model to linear attention (LoLCATs, Lizard or "
                 "the plain linear baseline)");
  cmd->add_option("--teacher", args.teacher,
                  "Teacher: a Hugging Face directory (config.json + safetensors) or a .gguf "
                  "file (default: the embedded default model)");
  cmd->add_option("--recipe", args.recipe, "lolcats | lizard | linear")
      ->check(CLI::IsMember({"lolcats", "lizard", "linear"}));
  cmd->add_option("--data", args.data,
                  "Training text: plain files, or .jsonl with \"text\" or chat \"messages\" "
                  "(default: text sampled from the teacher)");
  cmd->add_option("--tokens", args.tokens, "Training tokens over both stages");
  cmd->add_option("--out", args.out, "Output directory (model + checkpoint/)")->required();
  cmd->add_flag("--resume", args.resume, "Continue from <out>/checkpoint");
  cmd->add_option("--seq-len", args.seq_len, "Tokens per training sequence");
  cmd->add_option("--batch-size", args.batch_size, "Sequences per micro-batch");
  cmd->add_option("--grad-accum", args.grad_accum, "Micro-batches per optimizer step");
  cmd->add_option("--feature-dim", args.feature_dim, "Hedgehog width per head (0: recipe default)");
  cmd->add_option("--window", args.window, "Softmax window (0: recipe default)");
  cmd->add_flag("--terrace", args.terrace, "LoLCATs blocked window (own block + previous)");
  cmd->add_option("--layers", args.layers, "Layers to convert (default: all)");
  cmd->add_option("--lora-rank", args.lora_rank, "LoRA rank");
  cmd->add_option("--lora-alpha", args.lora_alpha, "LoRA alpha");
  cmd->add_option("--lora-dropout", args.lora_dropout, "LoRA dropout");
  cmd->add_option("--lora-targets", args.lora_targets, "Projections to adapt: q k v o");
  cmd->add_option("--stage1-lr", args.stage1_lr, "Attention-transfer learning rate");
  cmd->add_option("--stage2-lr", args.stage2_lr, "LoRA learning rate");
  cmd->add_option("--stage1-weight-decay", args.stage1_weight_decay,
                  "Attention-transfer AdamW weight decay (0: off)");
  cmd->add_option("--stage2-weight-decay", args.stage2_weight_decay,
                  "LoRA AdamW weight decay (0: off)");
  cmd->add_option("--kd-weight", args.kd_weight, "Stage 2 distillation weight (0: off)");
  cmd->add_option("--xent-weight", args.xent_weight,
                  "Stage 1 weight of the cross-entropy between the teacher's and the student's "
                  "attention weights, beside the MSE (0: off; memory grows with seq-len^2)");
  cmd->add_flag("--peft", args.peft,
                "Also write the LoRA as a PEFT adapter in <out>/adapter (adapter_config.json, "
                "adapter_model.safetensors; already merged into the weights)");
  cmd->add_option("--checkpoint-every", args.checkpoint_every, "Steps between checkpoints");
  cmd->add_option("--self-distill-sequences", args.self_distill_sequences,
                  "Sequences to sample from the teacher when no --data is given");
  cmd->add_option("--seed", args.seed, "Random seed");
  cmd->add_option("--threads", args.threads, "CPU threads (0: default)");
  cmd->add_option("--block-first", args.block_first,
                  "Blockwise stage 1: the first layer of this run's block");
  cmd->add_option("--block-count", args.block_count,
                  "Blockwise stage 1: layers in the block (the run stops after stage 1)");
  cmd->add_option("--block-inputs", args.block_inputs,
                  "Blockwise stage 1: the teacher's hidden states entering the block (a file "
                  "written by the previous block's --write-block-outputs); each step then runs "
                  "only the block's layers of the teacher");
  cmd->add_option("--write-block-outputs", args.write_block_outputs,
                  "Blockwise stage 1: after training, write the teacher's hidden states leaving "
                  "the block to this file (the next block's --block-inputs)");
  cmd->add_option("--init-from", args.init_from,
                  "Start from this converted student (an output directory or a delta): its "
                  "attention and LoRA replace the fresh initialisation; same recipe settings "
                  "and LoRA shape");
  cmd->add_option("--stage1-blocks", args.stage1_blocks,
                  "Checkpoints of blockwise stage-1 runs to join into --out, then go on to "
                  "stage 2");
  cmd->add_flag("--activation-checkpointing", args.activation_checkpointing,
               "Stage 2 recomputes layer activations in the backward pass (less memory)");
  cmd->add_option("--device", args.device, "cpu, cuda or cuda:N");
  cmd->add_option("--dtype", args.dtype,
                  "float32, or bfloat16 (teacher in bf16, training under autocast)");
  return cmd;
}

absl::Status RunConvert(const ConvertArgs& args) {
  absl::StatusOr<model::Recipe> recipe = model::ParseRecipe(args.recipe);
  if (!recipe.ok()) return recipe.status();
  if (args.threads > 0) at::set_num_threads(args.threads);
  convert::ConvertOptions o;
  o.teacher = args.teacher;
  if (o.teacher.empty()) {
    absl::StatusOr<std::string> found = model::FindDefaultModel();
    if (!found.ok()) return found.status();
    o.teacher = *found;
  }
  o.attention = model::DefaultLinearAttentionConfig(*recipe);
  if (args.feature_dim > 0) o.attention.feature_dim = args.feature_dim;
  if (args.window > 0) o.attention.window = args.window;
  o.attention.terrace = args.terrace;
  o.attention.layers = args.layers;
  o.data.files = args.data;
  o.data.seq_len = args.seq_len;
  o.data.seed = args.seed;
  o.data.self_distill_sequences = args.self_distill_sequences;
  o.tokens = args.tokens;
  o.batch_size = args.batch_size;
  o.grad_accum = args.grad_accum;
  o.stage1.lr = args.stage1_lr;
  o.stage2.lr = args.stage2_lr;
  o.stage1.weight_decay = args.stage1_weight_decay;
  o.stage2.weight_decay = args.stage2_weight_decay;
  o.lora.rank = args.lora_rank;
  o.lora.alpha = args.lora_alpha;
  o.lora.dropout = args.lora_dropout;
  o.lora.targets.clear();
  for (const std::string& t : args.lora_targets) {
    absl::StatusOr<model::LoraTarget> target = model::ParseLoraTarget(t);
    if (!target.ok()) return target.status();
    o.lora.targets.push_back(*target);
  }
  o.kd_weight = args.kd_weight;
  o.xent_weight = args.xent_weight;
  o.peft = args.peft;
  o.checkpoint_every = args.checkpoint_every;
  o.out_dir = args.out;
  o.resume = args.resume;
  o.seed = args.seed;
  o.device = args.device;
  o.activation_checkpointing = args.activation_checkpointing;
  o.block_first = args.block_first;
  o.block_count = args.block_count;
  o.block_inputs = args.block_inputs;
  o.init_from = args.init_from;
  o.write_block_outputs = args.write_block_outputs;
  if (!args.stage1_blocks.empty()) {
    if (absl::Status s = convert::MergeStage1Checkpoints(args.stage1_blocks, o.out_dir + "/checkpoint");
        !s.ok()) {
      return s;
    }
    o.resume = true;
  }
  if (args.dtype != "float32" && args.dtype != "bfloat16") {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype ", args.dtype, ": expected float32 or bfloat16"));
  }
  o.bf16 = args.dtype == "bfloat16";

  ProgressBar bar;
  g_stop_requested = 0;
  std::signal(SIGINT, RequestStop);
  std::signal(SIGTERM, RequestStop);
  absl::StatusOr<convert::ConvertResult> r =
      convert::Convert(o, [&](const convert::ProgressEvent& e) {
        bar.Show(e);
        return g_stop_requested == 0;
      });
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  bar.Finish();
  if (!r.ok()) return r.status();
  if (o.block_count > 0) {
    std::printf("stage 1 of layers [%lld, %lld) done: %s/checkpoint\n  attention MSE %.5g -> %.5g\n"
                "  join the blocks' checkpoints with --stage1-blocks to go on to stage 2\n",
                static_cast<long long>(o.block_first),
                static_cast<long long>(o.block_first + o.block_count), r->out_dir.c_str(),
                r->initial_val_mse, r->final_val_mse);
    return absl::OkStatus();
  }
  const double tokens_per_second =
      r->seconds > 0 ? static_cast<double>(r->tokens_seen) / r->seconds : 0;
  std::printf(
      "wrote %s\n  attention MSE %.5g -> %.5g\n  perplexity: teacher %.4f, student %.4f after "
      "stage 1, %.4f after stage 2\n  %lld tokens in %s (%.0f tokens/s overall)%s\n",
      r->out_dir.c_str(), r->initial_val_mse, r->final_val_mse, r->teacher_val_ppl,
      r->student_val_ppl_before_finetune, r->student_val_ppl,
      static_cast<long long>(r->tokens_seen), Duration(r->seconds).c_str(), tokens_per_second,
      r->resumed ? " (resumed)" : "");
  return absl::OkStatus();
}

}  // namespace linearize::cli
