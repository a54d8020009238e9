// Decode speed of a whole model at long contexts: a Llama-3-8B-shaped model
// (random bf16 weights: speed does not depend on their values) as its softmax
// teacher with a KV cache beside the same model converted to linear attention
// (LoLCATs by default), through the serving code path (LlamaModel::Forward
// with a Memory, one greedy token per step, fed back from the host as the
// engine does). Per model and context length:
//   - time to first token: one prefill of a random prompt of that length
//     (Logits::kLast) and its argmax on the host;
//   - decode tokens/s at each batch size: the batch-1 state is replicated
//     into a batch-B memory (every row at that context), then `steps` timed
//     steps after `warmup`; for the student also through DecodeBatch over B
//     separate sessions (what the engine runs: states stacked and split back
//     each step), and through a captured CUDA graph of the step
//     (model::DecodeGraph), checked against the plain step first;
//   - the state bytes per session and the peak GPU memory of the step.
// A configuration that does not fit the GPU (a KV cache of 64 x 32k tokens)
// is reported as such, with the bytes it would need, instead of run.
//
//   bench_decode [--shape llama3-8b|tiny] [--device cuda|cpu] [--recipes softmax,lolcats]
//                [--contexts 1024,8192,32768,131072] [--batches 1,64] [--steps 32]
//                [--warmup 3] [--sdp-cudnn off|on] [--fuse on|off] [--gemv on|off]
//                [--profile off|on]
//                [--out FILE.json]
// Prints a table; writes JSON to --out (default $OUT/decode_bench.json, else
// ./decode_bench.json). `--shape tiny --device cpu` is a seconds-long smoke run.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#ifdef LINEARIZE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bench/kernel_profile.h"
#include "common/io/model_config.h"
#include "common/model/decode_graph.h"
#include "common/model/linear_attention_config.h"
#include "common/model/llama_model.h"
#include "common/model/student_attention.h"
#include "kernels/gemv/gemv.h"
#include "nlohmann/json.hpp"

namespace {

namespace lm = linearize::model;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string shape = "llama3-8b";
  std::string device = "cuda";
  std::vector<std::string> recipes = {"softmax", "lolcats"};
  std::vector<int64_t> contexts = {1024, 8192, 32768, 131072};
  std::vector<int64_t> batches = {1, 64};
  int64_t steps = 32;
  int64_t warmup = 3;
  // SDPA's cuDNN backend: LlamaModel::Create switches it off on CUDA; "on"
  // turns it back on after the models are made, to measure what it costs.
  bool sdp_cudnn = false;
  // LlamaModel::FuseProjections (one q/k/v GEMM, one gate/up GEMM, residuals
  // added by the GEMMs); "off" measures the separate projections.
  bool fuse = true;
  // kernels::Linear's small-batch kernel for 1-4 rows; "off": cuBLAS everywhere.
  bool gemv = true;
  // Kineto profile of batch-1 decode steps: GPU time per kernel.
  bool profile = false;
  std::string out;
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string p; std::getline(in, p, ',');) {
    if (!p.empty()) parts.push_back(p);
  }
  return parts;
}

std::optional<Args> ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << flag << ": needs a value\n";
      return std::nullopt;
    }
    const std::string value = argv[++i];
    const auto ints = [&] {
      std::vector<int64_t> v;
      for (const std::string& p : Split(value)) v.push_back(std::stoll(p));
      return v;
    };
    if (flag == "--shape")
      a.shape = value;
    else if (flag == "--device")
      a.device = value;
    else if (flag == "--recipes")
      a.recipes = Split(value);
    else if (flag == "--contexts")
      a.contexts = ints();
    else if (flag == "--batches")
      a.batches = ints();
    else if (flag == "--steps")
      a.steps = std::stoll(value);
    else if (flag == "--warmup")
      a.warmup = std::stoll(value);
    else if (flag == "--out")
      a.out = value;
    else if (flag == "--sdp-cudnn")
      a.sdp_cudnn = value == "on";
    else if (flag == "--fuse")
      a.fuse = value != "off";
    else if (flag == "--gemv")
      a.gemv = value != "off";
    else if (flag == "--profile")
      a.profile = value == "on";
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return std::nullopt;
    }
  }
  if (a.shape != "llama3-8b" && a.shape != "tiny") {
    std::cerr << "--shape: llama3-8b or tiny, got " << a.shape << "\n";
    return std::nullopt;
  }
  if (a.steps < 1 || a.warmup < 0) {
    std::cerr << "--steps must be >= 1 and --warmup >= 0\n";
    return std::nullopt;
  }
  return a;
}

linearize::io::ModelConfig Shape(const std::string& name, int64_t max_context) {
  linearize::io::ModelConfig c;
  c.architecture = "llama";
  if (name == "llama3-8b") {  // Meta-Llama-3-8B's config.json
    c.vocab_size = 128256;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000;
  } else {
    c.vocab_size = 1024;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
  }
  c.max_position_embeddings = max_context;
  return c;
}

// N(0, 0.02) matrices and unit norms, made on the device in its dtype.
lm::ModelWeights RandomWeights(const linearize::io::ModelConfig& c, const at::TensorOptions& o) {
  at::manual_seed(0);
  const auto matrix = [&](int64_t rows, int64_t cols) {
    return at::randn({rows, cols}, o).mul_(0.02);
  };
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  lm::ModelWeights w;
  w.embed = matrix(c.vocab_size, c.hidden_size);
  w.lm_head = matrix(c.vocab_size, c.hidden_size);
  w.final_norm = at::ones({c.hidden_size}, o);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    lm::LayerWeights lw;
    lw.input_norm = at::ones({c.hidden_size}, o);
    lw.post_norm = at::ones({c.hidden_size}, o);
    lw.q_proj = matrix(q, c.hidden_size);
    lw.k_proj = matrix(kv, c.hidden_size);
    lw.v_proj = matrix(kv, c.hidden_size);
    lw.o_proj = matrix(c.hidden_size, q);
    lw.gate_proj = matrix(c.intermediate_size, c.hidden_size);
    lw.up_proj = matrix(c.intermediate_size, c.hidden_size);
    lw.down_proj = matrix(c.hidden_size, c.intermediate_size);
    w.layers.push_back(std::move(lw));
  }
  return w;
}

bool IsCuda(const at::Device& d) { return d.is_cuda(); }

// "cuda" without an index is the first device.
c10::DeviceIndex Index(const at::Device& d) { return d.index() < 0 ? 0 : d.index(); }

void Sync(const at::Device& d) {
#ifdef LINEARIZE_WITH_CUDA
  if (IsCuda(d)) at::cuda::getCurrentCUDAStream().synchronize();
#else
  (void)d;
#endif
}

// Bytes the allocator could still hand out (free device memory plus its
// cached blocks); unlimited on the CPU.
int64_t FreeBytes(const at::Device& d) {
#ifdef LINEARIZE_WITH_CUDA
  if (IsCuda(d)) {
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(Index(d));
    const size_t agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<int64_t>(free) + stats.reserved_bytes[agg].current -
           stats.allocated_bytes[agg].current;
  }
#endif
  (void)d;
  return std::numeric_limits<int64_t>::max();
}

void ResetPeak(const at::Device& d) {
#ifdef LINEARIZE_WITH_CUDA
  if (IsCuda(d)) c10::cuda::CUDACachingAllocator::resetPeakStats(Index(d));
#endif
  (void)d;
}

int64_t PeakBytes(const at::Device& d) {
#ifdef LINEARIZE_WITH_CUDA
  if (IsCuda(d)) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(Index(d));
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .peak;
  }
#endif
  (void)d;
  return 0;
}

void EmptyCache(const at::Device& d) {
#ifdef LINEARIZE_WITH_CUDA
  if (IsCuda(d)) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)d;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

at::Tensor Unwrap(absl::StatusOr<at::Tensor> r, const char* what) {
  if (!r.ok())
    throw std::runtime_error(std::string(what) + ": " + std::string(r.status().message()));
  return *std::move(r);
}

// The greedy next token of each row, on the host (as the engine samples).
at::Tensor NextIds(const at::Tensor& logits) {
  return logits.reshape({logits.size(0), -1}).argmax(-1).to(at::kCPU).view({-1, 1});
}

struct Result {
  std::string recipe;
  int64_t context = 0, batch = 0;
  std::string path;           // "memory" (one batch-B memory) or "decode_batch" (B sessions)
  std::string status = "ok";  // or why it did not run
  double ttft_ms = 0, step_ms = 0, tokens_per_s = 0;
  int64_t state_bytes_per_session = 0, peak_bytes = 0, needed_bytes = 0;
  double graph_max_rel_diff = 0;  // graph path: replayed vs plain step logits
  int64_t graph_kernels = 0;       // graph path: kernel launches per step
};

nlohmann::json ToJson(const Result& r) {
  return {{"recipe", r.recipe},
          {"context", r.context},
          {"batch", r.batch},
          {"path", r.path},
          {"status", r.status},
          {"ttft_ms", r.ttft_ms},
          {"step_ms", r.step_ms},
          {"tokens_per_s", r.tokens_per_s},
          {"state_bytes_per_session", r.state_bytes_per_session},
          {"peak_bytes", r.peak_bytes},
          {"needed_bytes", r.needed_bytes},
          {"graph_max_rel_diff", r.graph_max_rel_diff},
          {"graph_kernels", r.graph_kernels}};
}

// Times `steps` decode steps (after `warmup`) of `step`, which takes the ids
// [B, 1] on the host and returns logits.
template <typename Step>
double TimeSteps(const Args& a, const at::Device& dev, at::Tensor ids, Step step) {
  for (int64_t i = 0; i < a.warmup; ++i) ids = NextIds(step(ids));
  Sync(dev);
  const auto start = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) ids = NextIds(step(ids));
  Sync(dev);
  return Seconds(start, Clock::now()) / static_cast<double>(a.steps);
}

// Every state tensor of `memory` repeated `batch` times along the batch dim.
std::vector<lm::Memory::LayerTensors> Replicate(const lm::Memory& memory, int64_t batch) {
  std::vector<lm::Memory::LayerTensors> layers = memory.Export();
  for (auto& layer : layers) {
    for (auto& [name, t] : layer) {
      std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
      reps[0] = batch;
      t = t.repeat(reps);
    }
  }
  return layers;
}

void RunModel(const Args& a, const std::string& recipe, const lm::LlamaModel& model,
              const at::Device& dev, std::vector<Result>* results) {
  const int64_t vocab = model.vocab_size();
  const int64_t room = a.warmup + a.steps + 8;
  for (const int64_t ctx : a.contexts) {
    Result base;
    base.recipe = recipe;
    base.context = ctx;
    std::unique_ptr<lm::Memory> memory;
    at::Tensor first;
    try {
      at::manual_seed(ctx);
      const at::Tensor prompt = at::randint(vocab, {1, ctx}, at::TensorOptions().dtype(at::kLong));
      memory = model.NewMemory(1, ctx + room);
      Sync(dev);
      const auto start = Clock::now();
      first = NextIds(Unwrap(
          model.Forward(prompt.to(dev), memory.get(), lm::LlamaModel::Logits::kLast), "prefill"));
      base.ttft_ms = 1e3 * Seconds(start, Clock::now());
      base.state_bytes_per_session = memory->bytes();
    } catch (const std::exception& e) {
      base.path = "prefill";
      base.status = std::string("prefill failed: ") + e.what();
      results->push_back(base);
      std::cerr << recipe << " ctx " << ctx << ": " << base.status.substr(0, 300) << "\n";
      memory.reset();
      EmptyCache(dev);
      continue;
    }
    std::cerr << recipe << " ctx " << ctx << ": TTFT " << base.ttft_ms << " ms, state "
              << base.state_bytes_per_session / 1048576.0 << " MiB/session\n";
    for (const int64_t b : a.batches) {
      std::vector<std::string> paths = {"memory"};
      if (model.recurrent() && dev.is_cuda()) paths.push_back("graph");
      if (model.recurrent() && b > 1) paths.push_back("decode_batch");
      for (const std::string& path : paths) {
        Result r = base;
        r.batch = b;
        r.path = path;
        // A row's state at this context, plus its growth during the run.
        // The rows' states, plus the copies made while filling them (a
        // KV cache already holds room for the steps).
        r.needed_bytes = memory->bytes() * b * (path == "decode_batch" ? 3 : 2);
        if (b > 1 && r.needed_bytes > FreeBytes(dev)) {
          r.status =
              "does not fit: needs ~" + std::to_string(r.needed_bytes >> 30) + " GiB of state";
          results->push_back(r);
          std::cerr << "  batch " << b << " " << path << ": " << r.status << "\n";
          continue;
        }
        try {
          EmptyCache(dev);
          ResetPeak(dev);
          const at::Tensor ids = first.repeat({b, 1});
          double step_s = 0;
          const auto batch_memory = [&] {
            if (b == 1) return memory->Clone();
            std::unique_ptr<lm::Memory> m = model.NewMemory(b, ctx + room);
            if (absl::Status s = m->Import(memory->position(), Replicate(*memory, b)); !s.ok()) {
              throw std::runtime_error(std::string(s.message()));
            }
            return m;
          };
          if (path == "memory") {
            std::unique_ptr<lm::Memory> m = batch_memory();
            step_s = TimeSteps(a, dev, ids, [&](const at::Tensor& x) {
              return Unwrap(model.Forward(x.to(dev), m.get(), lm::LlamaModel::Logits::kLast),
                            "decode");
            });
          } else if (path == "graph") {
            std::unique_ptr<lm::Memory> m = batch_memory();
            std::unique_ptr<lm::Memory> check = m->Clone();
            absl::StatusOr<std::unique_ptr<lm::DecodeGraph>> graph =
                lm::DecodeGraph::Capture(model, m.get());
            if (!graph.ok()) throw std::runtime_error(std::string(graph.status().message()));
            r.graph_kernels = (*graph)->kernels_per_step();
            // The replayed step must equal the plain one, three steps in a row.
            at::Tensor x = ids;
            for (int i = 0; i < 3; ++i) {
              const at::Tensor want =
                  Unwrap(model.Forward(x.to(dev), check.get(), lm::LlamaModel::Logits::kLast),
                         "check")
                      .reshape({b, -1});
              const at::Tensor got = Unwrap((*graph)->Step(x), "graph").reshape({b, -1});
              const double diff = (got - want).abs().max().item<double>();
              const double scale = want.abs().max().item<double>();
              r.graph_max_rel_diff = std::max(r.graph_max_rel_diff, diff / scale);
              x = NextIds(want);
            }
            step_s = TimeSteps(
                a, dev, x, [&](const at::Tensor& y) { return Unwrap((*graph)->Step(y), "graph"); });
          } else {
            std::vector<std::unique_ptr<lm::Memory>> sessions;
            std::vector<lm::Memory*> raw;
            for (int64_t j = 0; j < b; ++j) {
              sessions.push_back(memory->Clone());
              raw.push_back(sessions.back().get());
            }
            step_s = TimeSteps(a, dev, ids, [&](const at::Tensor& x) {
              return Unwrap(model.DecodeBatch(x.view({-1}), raw), "DecodeBatch");
            });
          }
          r.step_ms = 1e3 * step_s;
          r.tokens_per_s = static_cast<double>(b) / step_s;
          r.peak_bytes = PeakBytes(dev);
        } catch (const std::exception& e) {
          r.status = std::string("failed: ") + e.what();
        }
        std::cerr << "  batch " << b << " " << path << ": "
                  << (r.status == "ok" ? std::to_string(r.tokens_per_s) + " tok/s"
                                       : r.status.substr(0, 300))
                  << (path == "graph"
                          ? ", max rel diff vs plain " + std::to_string(r.graph_max_rel_diff) +
                                ", " + std::to_string(r.graph_kernels) + " kernels/step"
                          : "")
                  << "\n";
        results->push_back(r);
        EmptyCache(dev);
      }
    }
  }
}

std::string Cell(const Result* r, const std::string& what) {
  if (r == nullptr) return "-";
  if (r->status != "ok") return r->status.rfind("does not fit", 0) == 0 ? "OOM" : "failed";
  char buf[64];
  if (what == "tps") std::snprintf(buf, sizeof buf, "%.1f", r->tokens_per_s);
  return buf;
}

}  // namespace

// Milliseconds for one pass of every weight matrix (the 7 projections of
// each layer and the LM head) over `batch` rows, captured as one CUDA graph:
// what the products alone need to read the weights once, the decode step's
// floor as reached on this GPU (no attention, norms or element-wise
// kernels); through kernels::Linear, so with cuBLAS or the small-batch
// kernel as SetGemvEnabled says.
double WeightPassMs(const lm::ModelWeights& w, int64_t batch, const at::Device& dev) {
#ifdef LINEARIZE_WITH_CUDA
  const int64_t hidden = w.embed.size(1), inter = w.layers[0].gate_proj.size(0);
  const at::Tensor x = at::randn({batch, hidden}, w.embed.options());
  const at::Tensor xi = at::randn({batch, inter}, w.embed.options());
  const at::Tensor xq = at::randn({batch, w.layers[0].o_proj.size(1)}, w.embed.options());
  const auto pass = [&] {
    for (const lm::LayerWeights& l : w.layers) {
      // Fused weights (back to back) are read as the fused model reads them.
      if (const at::Tensor qkv = lm::AdjacentRows({l.q_proj, l.k_proj, l.v_proj}); qkv.defined()) {
        linearize::kernels::Linear(x, qkv);
      } else {
        linearize::kernels::Linear(x, l.q_proj);
        linearize::kernels::Linear(x, l.k_proj);
        linearize::kernels::Linear(x, l.v_proj);
      }
      linearize::kernels::Linear(xq, l.o_proj);
      if (const at::Tensor gate_up = lm::AdjacentRows({l.gate_proj, l.up_proj}); gate_up.defined()) {
        linearize::kernels::Linear(x, gate_up);
      } else {
        linearize::kernels::Linear(x, l.gate_proj);
        linearize::kernels::Linear(x, l.up_proj);
      }
      linearize::kernels::Linear(xi, l.down_proj);
    }
    linearize::kernels::Linear(x, w.lm_head);
  };
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAGraph graph;
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    pass();
    side.synchronize();
    graph.capture_begin();
    pass();
    graph.capture_end();
  }
  graph.replay();
  Sync(dev);
  const int reps = 20;
  const auto start = Clock::now();
  for (int i = 0; i < reps; ++i) graph.replay();
  Sync(dev);
  return 1e3 * Seconds(start, Clock::now()) / reps;
#else
  (void)w;
  (void)batch;
  (void)dev;
  return 0;
#endif
}

// Batch-1 decode steps of `model` (after a 128-token prompt, so a window is
// full) under the profiler: GPU time per kernel, printed and returned as JSON.
nlohmann::json ProfileDecode(const std::string& recipe, const lm::LlamaModel& model,
                             const at::Device& dev) {
  at::manual_seed(7);
  const at::Tensor prompt =
      at::randint(model.vocab_size(), {1, 128}, at::TensorOptions().dtype(at::kLong));
  std::unique_ptr<lm::Memory> memory = model.NewMemory(1, 256);
  at::Tensor ids = NextIds(Unwrap(
      model.Forward(prompt.to(dev), memory.get(), lm::LlamaModel::Logits::kLast), "prefill"));
  const auto step = [&] {
    ids = NextIds(Unwrap(model.Forward(ids.to(dev), memory.get(), lm::LlamaModel::Logits::kLast),
                         "decode"));
  };
  for (int i = 0; i < 3; ++i) step();
  Sync(dev);
  const int steps = 5;
  const std::vector<linearize::bench::KernelTime> rows =
      linearize::bench::ProfileKernels([&] { step(); Sync(dev); }, steps);
  double total = 0, launches = 0;
  for (const auto& r : rows) {
    total += r.us_per_step;
    launches += r.launches_per_step;
  }
  std::printf("\nGPU time per decode step by kernel (%s, batch 1, %d profiled eager steps): "
              "%.0f us in %.0f launches\n\n| us/step | launches | kernel |\n|---|---|---|\n",
              recipe.c_str(), steps, total, launches);
  nlohmann::json j = {{"recipe", recipe}, {"us_per_step", total}, {"launches", launches}};
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i < 25) {
      std::printf("| %.1f | %.0f | %s |\n", rows[i].us_per_step, rows[i].launches_per_step,
                  rows[i].name.substr(0, 110).c_str());
    }
    j["kernels"].push_back({{"name", rows[i].name},
                            {"us_per_step", rows[i].us_per_step},
                            {"launches_per_step", rows[i].launches_per_step}});
  }
  if (rows.empty()) std::printf("(the profiler recorded no GPU activity)\n");
  return j;
}

int main(int argc, char** argv) {
  const std::optional<Args> args = ParseArgs(argc, argv);
  if (!args) return 2;
  const Args& a = *args;
  const at::Device dev(a.device);
  if (dev.is_cuda()) {
#ifndef LINEARIZE_WITH_CUDA
    std::cerr << "--device cuda: this build has no CUDA (LINEARIZE_WITH_CUDA=OFF)\n";
    return 2;
#endif
  }
  at::NoGradGuard no_grad;
  int64_t longest = 0;
  for (int64_t c : a.contexts) longest = std::max(longest, c);
  const linearize::io::ModelConfig config = Shape(a.shape, longest + a.warmup + a.steps + 64);
  const at::TensorOptions opts =
      at::TensorOptions().dtype(dev.is_cuda() ? at::kBFloat16 : at::kFloat).device(dev);
  lm::ModelWeights weights = RandomWeights(config, opts);
  if (a.fuse) {
    // Fused once: every model below is made from the fused weights, whose
    // q/k/v and gate/up it finds back to back (no copies).
    absl::StatusOr<std::unique_ptr<lm::LlamaModel>> m = lm::LlamaModel::Create(config, weights);
    if (!m.ok()) {
      std::cerr << m.status() << "\n";
      return 1;
    }
    (*m)->FuseProjections();
    weights = (*m)->weights();
  }
  std::vector<Result> results;
  nlohmann::json weight_pass, profiles = nlohmann::json::array();
  if (dev.is_cuda()) {
    int64_t bytes = 0;
    for (const lm::LayerWeights& l : weights.layers) {
      for (const at::Tensor* t :
           {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) {
        bytes += static_cast<int64_t>(t->nbytes());
      }
    }
    bytes += static_cast<int64_t>(weights.lm_head.nbytes());
    for (const int64_t b : a.batches) {
      for (const bool gemv : {false, true}) {
        if (gemv && b > 4) continue;  // the kernel takes 1-4 rows
        linearize::kernels::SetGemvEnabled(gemv);
        const double ms = WeightPassMs(weights, b, dev);
        const char* how = gemv ? "small-batch kernel" : "cuBLAS";
        std::printf(
            "weights alone (every projection and the LM head, batch %lld, %s, one graph): "
            "%.2f ms, %.0f GB/s\n",
            static_cast<long long>(b), how, ms, static_cast<double>(bytes) / ms / 1e6);
        weight_pass.push_back(
            {{"batch", b}, {"products", how}, {"ms", ms}, {"bytes", bytes}});
      }
    }
  }
  linearize::kernels::SetGemvEnabled(a.gemv);
  for (const std::string& recipe : a.recipes) {
    absl::StatusOr<std::unique_ptr<lm::LlamaModel>> model = lm::LlamaModel::Create(config, weights);
    if (!model.ok()) {
      std::cerr << model.status() << "\n";
      return 1;
    }
    if (a.fuse) (*model)->FuseProjections();
    if (a.sdp_cudnn) at::globalContext().setSDPUseCuDNN(true);
    if (recipe != "softmax") {
      absl::StatusOr<lm::Recipe> r = lm::ParseRecipe(recipe);
      if (!r.ok()) {
        std::cerr << "--recipes: " << r.status() << "\n";
        return 2;
      }
      const lm::LinearAttentionConfig lc = lm::DefaultLinearAttentionConfig(*r);
      for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
        lm::StudentTensors t = lm::InitStudentTensors(lc, config, l, 1);
        for (auto& [name, tensor] : t) tensor = tensor.to(dev);
        absl::StatusOr<std::unique_ptr<lm::StudentAttention>> att =
            lm::MakeStudentAttention(lc, config, std::move(t));
        if (!att.ok()) {
          std::cerr << att.status() << "\n";
          return 1;
        }
        (*model)->SetAttention(l, *std::move(att));
      }
    }
    RunModel(a, recipe, **model, dev, &results);
    if (a.profile) profiles.push_back(ProfileDecode(recipe, **model, dev));
  }

  // Table: tokens/s per (recipe, batch, path) x context, then TTFT and state.
  std::printf("\nDecode tokens/s (%s, %s, %lld timed steps)\n\n| model | batch | path |",
              a.shape.c_str(), a.device.c_str(), static_cast<long long>(a.steps));
  for (int64_t c : a.contexts) std::printf(" ctx %lld |", static_cast<long long>(c));
  std::printf("\n|---|---|---|");
  for (size_t i = 0; i < a.contexts.size(); ++i) std::printf("---|");
  std::printf("\n");
  std::map<std::tuple<std::string, int64_t, std::string>, std::map<int64_t, const Result*>> grid;
  std::map<std::string, std::map<int64_t, const Result*>> prefill;
  for (const Result& r : results) {
    if (r.batch > 0) grid[{r.recipe, r.batch, r.path}][r.context] = &r;
    if (r.batch == 1 || r.path == "prefill") prefill[r.recipe][r.context] = &r;
  }
  for (const auto& [key, row] : grid) {
    std::printf("| %s | %lld | %s |", std::get<0>(key).c_str(),
                static_cast<long long>(std::get<1>(key)), std::get<2>(key).c_str());
    for (int64_t c : a.contexts) {
      auto it = row.find(c);
      std::printf(" %s |", Cell(it == row.end() ? nullptr : it->second, "tps").c_str());
    }
    std::printf("\n");
  }
  std::printf("\nTime to first token (ms) / state per session (MiB)\n\n| model |");
  for (int64_t c : a.contexts) std::printf(" ctx %lld |", static_cast<long long>(c));
  std::printf("\n|---|");
  for (size_t i = 0; i < a.contexts.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (const auto& [recipe, row] : prefill) {
    std::printf("| %s |", recipe.c_str());
    for (int64_t c : a.contexts) {
      auto it = row.find(c);
      if (it == row.end() || it->second->path == "prefill") {
        std::printf(" %s |", it == row.end() ? "-" : "failed");
      } else {
        std::printf(" %.1f / %.1f |", it->second->ttft_ms,
                    it->second->state_bytes_per_session / 1048576.0);
      }
    }
    std::printf("\n");
  }

  nlohmann::json j;
  j["shape"] = a.shape;
  j["device"] = a.device;
  j["steps"] = a.steps;
  j["warmup"] = a.warmup;
  j["sdp_cudnn"] = a.sdp_cudnn;
  j["fused_projections"] = a.fuse;
  j["small_batch_gemv"] = a.gemv;
  j["config"] = {{"vocab", config.vocab_size},
                 {"hidden", config.hidden_size},
                 {"intermediate", config.intermediate_size},
                 {"layers", config.num_hidden_layers},
                 {"heads", config.num_attention_heads},
                 {"kv_heads", config.num_key_value_heads},
                 {"head_dim", config.head_dim},
                 {"dtype", dev.is_cuda() ? "bfloat16" : "float32"}};
#ifdef LINEARIZE_WITH_CUDA
  if (dev.is_cuda()) j["gpu"] = at::cuda::getCurrentDeviceProperties()->name;
#endif
  for (const Result& r : results) j["results"].push_back(ToJson(r));
  j["weight_pass"] = weight_pass;
  if (a.profile) j["profiles"] = profiles;
  std::string out = a.out;
  if (out.empty()) {
    const char* dir = std::getenv("OUT");
    out = std::string(dir != nullptr && *dir != '\0' ? dir : ".") + "/decode_bench.json";
  }
  std::ofstream(out) << j.dump(2) << "\n";
  std::printf("\nwrote %s\n", out.c_str());
  return 0;
}
