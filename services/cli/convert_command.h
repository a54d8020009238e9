// `linearize convert`: turn a teacher (a Hugging Face directory or a GGUF
// file; by default the embedded default model) into a linear-attention
// student with the conversion pipeline, showing progress as a text bar on
// stderr, and write it to --out as a Hugging Face directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace CLI { class App; }

namespace linearize::cli {

struct ConvertArgs {
  std::string teacher;  // "": the embedded default model
  std::string recipe = "lolcats";
  std::vector<std::string> data;  // none: self-distillation
  int64_t tokens = 20'000'000;
  std::string out;
  bool resume = false;
  int64_t seq_len = 1024;
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t feature_dim = 0;  // 0: the recipe's default
  int64_t window = 0;       // 0: the recipe's default
  bool terrace = false;
  std::vector<int64_t> layers;  // none: all
  int64_t lora_rank = 8;
  double lora_alpha = 16;
  double lora_dropout = 0;
  std::vector<std::string> lora_targets = {"q", "k", "v", "o"};
  double stage1_lr = 1e-2;
  double stage2_lr = 1e-4;
  double stage1_weight_decay = 0, stage2_weight_decay = 0;
  double kd_weight = 0;
  double xent_weight = 0;  // stage 1 attention cross-entropy (0: off)
  bool peft = false;
  int64_t checkpoint_every = 100;
  int64_t self_distill_sequences = 64;
  uint64_t seed = 0;
  int threads = 0;  // 0: LibTorch's default
  int64_t block_first = 0, block_count = 0;  // blockwise stage 1 (0: all layers)
  std::vector<std::string> stage1_blocks;     // block checkpoints to join, then stage 2
  std::string block_inputs;          // cached teacher stream entering the block
  std::string write_block_outputs;   // where to write the stream leaving it
  std::string init_from;             // a converted student to start from
  bool activation_checkpointing = false;
  std::string device = "cpu";
  std::string dtype = "float32";  // or bfloat16
};

// Registers the subcommand; `args` must outlive parsing and the run.
CLI::App* AddConvertCommand(CLI::App& app, ConvertArgs& args);
absl::Status RunConvert(const ConvertArgs& args);

}  // namespace linearize::cli
