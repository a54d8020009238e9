// Attention kernels on the GPU, timed with CUDA events (plain main(): the GPU
// machine has no Google Benchmark). bf16, B = 1, 32 heads, D = 128, Hedgehog
// F = 128 (Fh = 64):
//   prefill T in {2k, 4k, 8k, 16k, 32k}: our kernels (chunked kernel alone on
//   precomputed features, baseline, LoLCATs and Lizard entry points) against
//   at::scaled_dot_product_attention (causal) and the LibTorch forms of the
//   same entry points (CUDA kernels switched off);
//   training T in the same set: forward + backward of the same attentions
//   (CUDA kernels on and off) and of SDPA, gradients to every input;
//   decode at batch {1, 16, 64, 256} (32 query heads, 8 kv heads): our decode
//   kernels (baseline, LoLCATs, Lizard) against the LibTorch DecodeStep.
// Prints a table and writes JSON to argv[1], else $OUT/attention_bench.json,
// else ./attention_bench.json. `--profile` instead runs one T = 32k forward of
// the baseline and of LoLCATs (for ncu) and exits; `--profile-train` prints
// each recipe's T = 32k forward + backward kernel by kernel (torch's Kineto
// profiler) and exits; on the H200 it recorded our own kernels in only one
// of the three profiled steps (launches below 1 per step), so read its
// times as shares, and the timed rows for totals. `--step OP` runs one
// T = 32k forward + backward step of one training case (or, for OP one of
// linear_attention, lolcats and lizard, one forward without autograd) between
// cudaProfilerStart/Stop, after a warm-up, and exits: scripts/gpu-kernel-times
// runs it under ncu for each kernel's time. Each row: median of `reps` timed runs after
// warm-up (one call a run; the prefill rows of our entry points also give
// `queued`, four calls a run, per call: Row::queued_ms); floors from the bytes each op must move
// (inputs read once, output written once; for decode the state read and written) at the measured
// copy bandwidth, and from its FLOPs at the measured bf16 matmul rate.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/core/GradMode.h>
#include <cuda_profiler_api.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "bench/kernel_profile.h"
#include "kernels/feature_map/feature_map.h"
#include "kernels/linear_attention/chunked_linear.h"
#include "kernels/linear_attention/chunked_linear_dispatch.h"
#include "kernels/linear_attention/cuda_dispatch.h"
#include "kernels/linear_attention/linear_attention.h"
#include "kernels/lizard/lizard_attention.h"
#include "kernels/lolcats/lolcats_attention.h"

namespace {

namespace lk = linearize::kernels;

struct Row {
  std::string op, impl;
  int64_t t = 0, batch = 1;
  double ms = 0, floor_ms = 0, bytes = 0, flops = 0;
  // Prefill rows of the CUDA entry points: ms per call of four calls between
  // the events, so the host's work for a call overlaps the GPU's for the one
  // before (as a serving loop issues them); ms above times one call, whose
  // host work before its first kernel leaves the GPU idle. 0: not measured.
  double queued_ms = 0;
};

// One attention's training step: `fwd` returns the differentiable outputs,
// whose gradients flow back to `inputs`.
struct TrainCase {
  std::string op;
  double bytes = 0, flops = 0;
  std::function<std::vector<at::Tensor>()> fwd;
  std::vector<at::Tensor> inputs;
  bool has_libtorch_form = true;  // also timed with the CUDA kernels off
};

// Median milliseconds of fn over `reps` runs (each run = `inner` calls
// between two events), after `warmup` runs.
double TimeMs(const std::function<void()>& fn, int reps, int warmup = 2, int inner = 1) {
  for (int i = 0; i < warmup; ++i) fn();
  at::cuda::getCurrentCUDAStream().synchronize();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    for (int i = 0; i < inner; ++i) fn();
    stop.record();
    stop.synchronize();
    ms.push_back(start.elapsed_time(stop) / inner);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A training step of an attention: `fwd` (returns the differentiable
// outputs) and the backward to `inputs`, with random output gradients drawn
// once, here. Grad mode is on while the step runs.
std::function<void()> FwdBwdStep(const std::function<std::vector<at::Tensor>()>& fwd,
                                 const std::vector<at::Tensor>& inputs) {
  const c10::AutoGradMode grad(true);
  std::vector<at::Tensor> grads;
  for (const at::Tensor& o : fwd()) grads.push_back(at::randn_like(o));
  return [fwd, inputs, grads] {
    const c10::AutoGradMode grad(true);
    torch::autograd::grad(fwd(), inputs, grads, /*retain_graph=*/std::nullopt,
                          /*create_graph=*/false, /*allow_unused=*/true);
  };
}

// Median milliseconds of that step.
double TimeFwdBwd(const std::function<std::vector<at::Tensor>()>& fwd,
                  const std::vector<at::Tensor>& inputs, int reps, int warmup = 2) {
  return TimeMs(FwdBwdStep(fwd, inputs), reps, warmup);
}

// bf16 autocast on CUDA while alive, as the converter trains (float32
// parameters and feature maps go to the kernels, which compute in bf16).
class Bf16Autocast {
 public:
  Bf16Autocast() {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  ~Bf16Autocast() {
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
};

// A copy of x that autograd tracks.
at::Tensor Leaf(const at::Tensor& x) { return x.detach().clone().requires_grad_(true); }

struct Ceilings {
  double bytes_per_ms = 0;  // device-to-device copy, read + written
  double flops_per_ms = 0;  // bf16 matmul
};

Ceilings Measure() {
  Ceilings c;
  const auto opts = at::TensorOptions().device(at::kCUDA);
  {
    const at::Tensor src = at::randn({int64_t{1} << 29}, opts.dtype(at::kBFloat16));  // 1 GiB
    at::Tensor dst = at::empty_like(src);
    const double ms = TimeMs([&] { dst.copy_(src); }, 10);
    c.bytes_per_ms = 2.0 * src.numel() * 2 / ms;
  }
  {
    const int64_t n = 8192;
    const at::Tensor a = at::randn({n, n}, opts.dtype(at::kBFloat16));
    const at::Tensor b = at::randn({n, n}, opts.dtype(at::kBFloat16));
    const double ms = TimeMs([&] { at::matmul(a, b); }, 10);
    c.flops_per_ms = 2.0 * n * n * n / ms;
  }
  return c;
}

void Add(std::vector<Row>& rows, const Ceilings& ceil, Row r) {
  r.floor_ms = std::max(r.bytes / ceil.bytes_per_ms, r.flops / ceil.flops_per_ms);
  std::printf("%-22s %-14s B=%-4ld T=%-6ld %10.3f ms  floor %8.3f ms  x%6.2f  %7.1f GB/s  %7.1f TFLOP/s\n",
              r.op.c_str(), r.impl.c_str(), static_cast<long>(r.batch), static_cast<long>(r.t),
              r.ms, r.floor_ms, r.ms / r.floor_ms, r.bytes / r.ms / 1e6, r.flops / r.ms / 1e9);
  if (r.queued_ms > 0) std::printf("%-22s %-14s   queued: %.3f ms a call\n", "", "", r.queued_ms);
  std::fflush(stdout);
  rows.push_back(r);
}

void WriteJson(const std::string& path, const std::vector<Row>& rows, const Ceilings& ceil,
               const std::string& device) {
  std::ofstream out(path);
  out << "{\n  \"device\": \"" << device << "\",\n";
  out << "  \"copy_GBps\": " << ceil.bytes_per_ms / 1e6 << ",\n";
  out << "  \"bf16_matmul_TFLOPs\": " << ceil.flops_per_ms / 1e9 << ",\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    out << "    {\"op\": \"" << r.op << "\", \"impl\": \"" << r.impl << "\", \"batch\": " << r.batch
        << ", \"T\": " << r.t << ", \"ms\": " << r.ms << ", \"floor_ms\": " << r.floor_ms
        << ", \"bytes\": " << r.bytes << ", \"flops\": " << r.flops;
    if (r.queued_ms > 0) out << ", \"queued_ms\": " << r.queued_ms;
    out << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
  }
  out << "  ]\n}\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (!at::hasCUDA()) {
    std::fprintf(stderr, "bench_attention_gpu: no CUDA device\n");
    return 1;
  }
  const c10::NoGradGuard no_grad;
  const bool profile = argc > 1 && std::string(argv[1]) == "--profile";
  const bool profile_train = argc > 1 && std::string(argv[1]) == "--profile-train";
  const std::string step_op = argc > 2 && std::string(argv[1]) == "--step" ? argv[2] : "";
  std::string path = "attention_bench.json";
  if (argc > 1 && !profile && !profile_train && step_op.empty()) {
    path = argv[1];
  } else if (const char* out = std::getenv("OUT")) {
    path = std::string(out) + "/attention_bench.json";
  }
  const std::string device = at::cuda::getCurrentDeviceProperties()->name;
  const int64_t h = 32, d = 128, fh = 64, f = 2 * fh, w = 64;
  const auto bf = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  lk::FeatureMaps maps;
  maps.kind = lk::FeatureMapKind::kHedgehog;
  maps.q_weight = (at::randn({h, d, fh}, bf.dtype(at::kFloat)) / std::sqrt(double(d))).to(at::kBFloat16);
  maps.k_weight = (at::randn({h, d, fh}, bf.dtype(at::kFloat)) / std::sqrt(double(d))).to(at::kBFloat16);
  lk::lolcats::Weights lw{maps, at::randn({h}, bf.dtype(at::kFloat))};
  lk::lolcats::Options lo;
  lo.window = w;
  // Lizard: its own default window (128) and 4 sinks, gates mild.
  lk::lizard::Weights zw{maps, at::randn({h, 4}, bf.dtype(at::kFloat)),
                         at::randn({h}, bf.dtype(at::kFloat))};
  const lk::lizard::Options zo;
  const auto lizard_inputs = [&](int64_t b, int64_t hk, int64_t t) {
    return lk::lizard::Inputs{at::randn({b, h, t, d}, bf), at::randn({b, hk, t, d}, bf),
                              at::randn({b, hk, t, d}, bf),
                              at::log_sigmoid(at::randn({b, hk, t}, bf.dtype(at::kFloat)) + 3),
                              at::randn({b, h, t, d}, bf), at::randn({b, hk, t, d}, bf)};
  };
  // Each attention's training step at length t: leaves for every input,
  // feature map and window/gate parameter.
  const auto train_cases = [&](int64_t t) {
    const at::Tensor q = Leaf(at::randn({1, h, t, d}, bf)), k = Leaf(at::randn({1, h, t, d}, bf)),
                     v = Leaf(at::randn({1, h, t, d}, bf));
    const double tok = double(t) * h;
    // Forward + backward moves about 3x the forward's bytes (q, k, v, y, dy
    // read again; dq, dk, dv written) and about 3x its FLOPs.
    const double io = 3.0 * 4.0 * tok * d * 2;
    const double chunk_flops = 3.0 * 2.0 * (64.0 * f + 64.0 * d + 2.0 * f * d);
    lk::FeatureMaps tmaps = maps;
    tmaps.q_weight = Leaf(maps.q_weight);
    tmaps.k_weight = Leaf(maps.k_weight);
    std::vector<TrainCase> cases;
    {  // the chunked form alone on precomputed bf16 features, plain and gated
      const at::Tensor pq = Leaf(lk::HedgehogFeatureMap(q.detach(), maps.q_weight));
      const at::Tensor pk = Leaf(lk::HedgehogFeatureMap(k.detach(), maps.k_weight));
      const at::Tensor lg =
          Leaf(at::log_sigmoid(at::randn({1, h, t}, bf.dtype(at::kFloat)) + 3));
      const double bytes = 3.0 * tok * (2.0 * f + 2.0 * d) * 2;
      cases.push_back({"chunked_linear_fwd_bwd", bytes, tok * chunk_flops, [=] {
                         const lk::detail::LinearTerms lt =
                             lk::detail::ChunkedCausalLinear(pq, pk, v, {}, 64);
                         return std::vector<at::Tensor>{lt.num, lt.den};
                       }, {pq, pk, v}});
      cases.push_back({"chunked_gated_fwd_bwd", bytes, tok * chunk_flops, [=] {
                         const lk::detail::LinearTerms lt =
                             lk::detail::ChunkedCausalLinear(pq, pk, v, lg, 64);
                         return std::vector<at::Tensor>{lt.num, lt.den};
                       }, {pq, pk, v, lg}});
    }
    cases.push_back({"hedgehog_map_fwd_bwd", 3.0 * tok * (d + f) * 2, 3.0 * tok * 2.0 * d * fh,
                     [=] { return std::vector<at::Tensor>{
                               lk::HedgehogFeatureMap(q, tmaps.q_weight)}; },
                     {q, tmaps.q_weight}});
    cases.push_back({"linear_attention_fwd_bwd", io, tok * chunk_flops, [=] {
                       return std::vector<at::Tensor>{
                           lk::linear_attention::ForwardParallel(q, k, v, tmaps)};
                     }, {q, k, v, tmaps.q_weight, tmaps.k_weight}});
    const lk::lolcats::Weights tw{tmaps, Leaf(lw.window_logit)};
    cases.push_back({"lolcats_fwd_bwd", io, tok * (chunk_flops + 3.0 * 2.0 * 2.0 * 128 * d), [=] {
                       return std::vector<at::Tensor>{
                           lk::lolcats::ForwardParallel(q, k, v, tw, lo)};
                     }, {q, k, v, tmaps.q_weight, tmaps.k_weight, tw.window_logit}});
    lk::lizard::Inputs zin = lizard_inputs(1, h, t);
    for (at::Tensor* x : {&zin.q, &zin.k, &zin.v, &zin.log_gamma, &zin.q_window, &zin.k_window}) {
      *x = Leaf(*x);
    }
    const lk::lizard::Weights tzw{tmaps, Leaf(zw.meta_logits), Leaf(zw.alpha)};
    cases.push_back({"lizard_fwd_bwd", io + 3.0 * 2.0 * tok * d * 2,
                     tok * (chunk_flops + 3.0 * 2.0 * 2.0 * 2.0 * zo.window * d), [=] {
                       return std::vector<at::Tensor>{lk::lizard::ForwardParallel(zin, tzw, zo)};
                     },
                     {zin.q, zin.k, zin.v, zin.log_gamma, zin.q_window, zin.k_window,
                      tmaps.q_weight, tmaps.k_weight, tzw.meta_logits, tzw.alpha}});
    cases.push_back({"sdpa_causal_fwd_bwd", io,
                     3.5 * 2.0 * double(t) * double(t) * d * h,  // backward ~2.5x the forward
                     [=] { return std::vector<at::Tensor>{
                               at::scaled_dot_product_attention(q, k, v, {}, 0.0, true)}; },
                     {q, k, v}, /*has_libtorch_form=*/false});
    return cases;
  };
  if (!step_op.empty()) {  // one T = 32k step of one case after a warm-up, for ncu
    const auto profile_once = [](const std::function<void()>& step) {
      step();
      at::cuda::getCurrentCUDAStream().synchronize();
      cudaProfilerStart();  // ncu --profile-from-start off records this step alone
      step();
      at::cuda::getCurrentCUDAStream().synchronize();
      cudaProfilerStop();
    };
    // Forward only (prefill, no autograd): linear_attention, lolcats, lizard;
    // their inputs are made only for them.
    const int64_t t = 32768;
    if (step_op == "lizard") {
      const lk::lizard::Inputs zin = lizard_inputs(1, h, t);
      profile_once([&] { lk::lizard::ForwardParallel(zin, zw, zo); });
      return 0;
    }
    if (step_op == "linear_attention" || step_op == "lolcats") {
      const at::Tensor q = at::randn({1, h, t, d}, bf), k = at::randn({1, h, t, d}, bf),
                       v = at::randn({1, h, t, d}, bf);
      if (step_op == "lolcats") {
        profile_once([&] { lk::lolcats::ForwardParallel(q, k, v, lw, lo); });
      } else {
        profile_once([&] { lk::linear_attention::ForwardParallel(q, k, v, maps); });
      }
      return 0;
    }
    const Bf16Autocast autocast;
    for (const TrainCase& c : train_cases(t)) {
      if (c.op != step_op) continue;
      profile_once(FwdBwdStep(c.fwd, c.inputs));
      return 0;
    }
    std::fprintf(stderr, "bench_attention_gpu: no training case %s\n", step_op.c_str());
    return 2;
  }
  if (profile_train) {  // each case's T = 32k step, kernel by kernel
    const Bf16Autocast autocast;
    for (const TrainCase& c : train_cases(32768)) {
      const std::function<void()> step = FwdBwdStep(c.fwd, c.inputs);
      step();
      at::cuda::getCurrentCUDAStream().synchronize();
      double total = 0;
      const std::vector<linearize::bench::KernelTime> kernels =
          linearize::bench::ProfileKernels(step, 3);
      for (const auto& kt : kernels) total += kt.us_per_step;
      std::printf("\n%s, T = 32768: %.3f ms of GPU time per step\n", c.op.c_str(), total / 1e3);
      for (size_t i = 0; i < kernels.size() && i < 20; ++i) {
        std::printf("  %9.1f us  x%-4.0f %.110s\n", kernels[i].us_per_step,
                    kernels[i].launches_per_step, kernels[i].name.c_str());
      }
      std::fflush(stdout);
    }
    return 0;
  }
  if (profile) {
    const int64_t t = 32768;
    const at::Tensor q = at::randn({1, h, t, d}, bf), k = at::randn({1, h, t, d}, bf),
                     v = at::randn({1, h, t, d}, bf);
    lk::linear_attention::ForwardParallel(q, k, v, maps);
    lk::lolcats::ForwardParallel(q, k, v, lw, lo);
    at::cuda::getCurrentCUDAStream().synchronize();
    return 0;
  }
  // LINEARIZE_BENCH_PARTS: a subset of "prefill,train,decode,continue" (default all).
  const char* parts_env = std::getenv("LINEARIZE_BENCH_PARTS");
  const std::string parts = parts_env != nullptr ? parts_env : "prefill,train,decode,continue";
  const auto part = [&](const char* name) { return parts.find(name) != std::string::npos; };
  const Ceilings ceil = Measure();
  std::printf("%s: copy %.0f GB/s, bf16 matmul %.0f TFLOP/s\n", device.c_str(),
              ceil.bytes_per_ms / 1e6, ceil.flops_per_ms / 1e9);

  std::vector<Row> rows;
  for (const int64_t t : {2048, 4096, 8192, 16384, 32768}) {
    if (!part("prefill")) break;
    const at::Tensor q = at::randn({1, h, t, d}, bf), k = at::randn({1, h, t, d}, bf),
                     v = at::randn({1, h, t, d}, bf);
    const double tok = double(t) * h;
    const double io = 4.0 * tok * d * 2;  // q, k, v read, y written (bf16)
    // Per token and head: chunk products (A, A v, q S, k^T v with C = 64) and two feature maps.
    const double chunk_flops = 2.0 * (64.0 * f + 64.0 * d + 2.0 * f * d);
    const double map_flops = 2.0 * 2.0 * d * fh;
    const int reps = t >= 16384 ? 5 : 10;

    {  // the chunked kernel alone, features precomputed (bf16)
      const at::Tensor pq = lk::HedgehogFeatureMap(q, maps.q_weight);
      const at::Tensor pk = lk::HedgehogFeatureMap(k, maps.k_weight);
      lk::detail::CudaLinearInputs in;
      in.phi_q = pq;
      in.phi_k = pk;
      in.v = v;
      Row r{"chunked_linear", "cuda", t};
      r.ms = TimeMs([&] { lk::detail::ChunkedCausalLinearCuda(in); }, reps);
      r.bytes = tok * (2.0 * f + 2.0 * d) * 2;  // phi_q, phi_k, v read, y written
      r.flops = tok * chunk_flops;
      Add(rows, ceil, r);
      Row m{"hedgehog_map", "cuda", t};
      m.ms = TimeMs([&] { lk::HedgehogFeatureMap(q, maps.q_weight); }, reps);
      m.bytes = tok * (d + f) * 2;  // x read, phi written
      m.flops = tok * 2.0 * d * fh;
      Add(rows, ceil, m);
    }
    {
      const auto run = [&] { lk::linear_attention::ForwardParallel(q, k, v, maps); };
      Row r{"linear_attention", "cuda", t};
      r.ms = TimeMs(run, reps);
      r.queued_ms = TimeMs(run, reps, 2, 4);
      r.bytes = io;
      r.flops = tok * (chunk_flops + map_flops);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(false);
      r.impl = "libtorch";
      r.queued_ms = 0;
      r.ms = TimeMs(run, 3, 1);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(true);
    }
    {
      const auto run = [&] { lk::lolcats::ForwardParallel(q, k, v, lw, lo); };
      Row r{"lolcats", "cuda", t};
      const double win_flops = 2.0 * 2.0 * 128 * d;  // band scores and values (128 keys)
      r.ms = TimeMs(run, reps);
      r.queued_ms = TimeMs(run, reps, 2, 4);
      r.bytes = io;
      r.flops = tok * (chunk_flops + map_flops + win_flops);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(false);
      r.impl = "libtorch";
      r.queued_ms = 0;
      r.ms = TimeMs(run, 3, 1);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(true);
    }
    {  // gated branch on the chunked kernel; the window branch is LibTorch
      const lk::lizard::Inputs in = lizard_inputs(1, h, t);
      const auto run = [&] { lk::lizard::ForwardParallel(in, zw, zo); };
      Row r{"lizard", "cuda", t};
      r.ms = TimeMs(run, reps);
      r.queued_ms = TimeMs(run, reps, 2, 4);
      r.bytes = io + 2.0 * tok * d * 2;  // + the window branch's own q, k
      r.flops = tok * (chunk_flops + map_flops + 2.0 * 2.0 * 2.0 * zo.window * d);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(false);
      r.impl = "libtorch";
      r.queued_ms = 0;
      r.ms = TimeMs(run, 3, 1);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(true);
    }
    {
      Row r{"sdpa_causal", "aten", t};
      r.ms = TimeMs([&] { at::scaled_dot_product_attention(q, k, v, {}, 0.0, true); }, reps);
      r.bytes = io;
      r.flops = 2.0 * double(t) * double(t) * d * h;  // causal half of 4 T^2 D per head
      Add(rows, ceil, r);
    }
  }


  // Training: forward + backward of each attention (inputs, feature maps and
  // window/gate parameters all require gradients), CUDA kernels on and off,
  // under bf16 autocast as the converter runs them.
  for (const int64_t t : {2048, 4096, 8192, 16384, 32768}) {
    if (!part("train")) break;
    const Bf16Autocast autocast;
    const int reps = t >= 16384 ? 5 : 8;
    for (const TrainCase& c : train_cases(t)) {
      Row r{c.op, "cuda", t};
      r.bytes = c.bytes;
      r.flops = c.flops;
      r.ms = TimeFwdBwd(c.fwd, c.inputs, reps);
      Add(rows, ceil, r);
      if (!c.has_libtorch_form) continue;
      lk::detail::SetCudaAttentionEnabled(false);
      r.impl = "libtorch";
      r.ms = TimeFwdBwd(c.fwd, c.inputs, 3, 1);
      Add(rows, ceil, r);
      lk::detail::SetCudaAttentionEnabled(true);
    }
  }

  // Decode: one token per session, 32 query heads over 8 kv heads.
  const int64_t hkv = 8;
  lk::FeatureMaps dmaps = maps;
  dmaps.k_weight = (at::randn({hkv, d, fh}, bf.dtype(at::kFloat)) / std::sqrt(double(d))).to(at::kBFloat16);
  lk::lolcats::Weights dlw{dmaps, lw.window_logit};
  for (const int64_t b : {1, 16, 64, 256}) {
    if (!part("decode")) break;
    const at::Tensor q = at::randn({b, h, 1, d}, bf), k = at::randn({b, hkv, 1, d}, bf),
                     v = at::randn({b, hkv, 1, d}, bf);
    const double state_bytes = 2.0 * b * h * (f * d + f) * 4;  // read + write, float32
    const double dec_flops = double(b) * h * (4.0 * f * d + 4.0 * d * fh);
    for (const bool cuda : {true, false}) {
      lk::detail::SetCudaAttentionEnabled(cuda);
      lk::linear_attention::State st = lk::linear_attention::EmptyState(b, h, f, d, bf);
      Row r{"decode_linear", cuda ? "cuda" : "libtorch", 1, b};
      r.ms = TimeMs([&] { lk::linear_attention::DecodeStep(st, q, k, v, dmaps); }, 7, 3, 20);
      r.bytes = state_bytes + 4.0 * b * h * d * 2;
      r.flops = dec_flops;
      Add(rows, ceil, r);
      // LoLCATs from a full window (every step evicts one key).
      const at::Tensor pq = at::randn({b, h, w + 1, d}, bf), pk = at::randn({b, hkv, w + 1, d}, bf),
                       pv = at::randn({b, hkv, w + 1, d}, bf);
      lk::lolcats::State ls = lk::lolcats::Prefill(pq, pk, pv, dlw, lo).state;
      Row r2{"decode_lolcats", cuda ? "cuda" : "libtorch", 1, b};
      r2.ms = TimeMs([&] { lk::lolcats::DecodeStep(ls, q, k, v, dlw, lo); }, 7, 3, 20);
      r2.bytes = state_bytes + 2.0 * b * hkv * w * d * 2 + 4.0 * b * h * d * 2;
      r2.flops = dec_flops + double(b) * h * 4.0 * w * d;
      Add(rows, ceil, r2);
      // Lizard from a full window: a gated state update and a 128-slot window.
      lk::lizard::Weights dzw{dmaps, zw.meta_logits, zw.alpha};
      lk::lizard::State zs = lk::lizard::Prefill(lizard_inputs(b, hkv, zo.window), dzw, zo).state;
      const lk::lizard::Inputs one = lizard_inputs(b, hkv, 1);
      Row r3{"decode_lizard", cuda ? "cuda" : "libtorch", 1, b};
      r3.ms = TimeMs([&] { lk::lizard::DecodeStep(zs, one, dzw, zo); }, 7, 3, 20);
      r3.bytes = state_bytes + 2.0 * b * hkv * zo.window * d * 2 + 6.0 * b * h * d * 2;
      r3.flops = dec_flops + double(b) * h * 4.0 * zo.window * d;
      Add(rows, ceil, r3);
    }
    lk::detail::SetCudaAttentionEnabled(true);
  }

  // A follow-up prompt that continues a state (a chat's next turn): T new
  // tokens after 8k, 32 query heads over 8 kv heads, kernels on and off.
  for (const int64_t t : {64, 512, 4096}) {
    if (!part("continue")) break;
    const int64_t ctx = 8192;
    const auto seq = [&](int64_t heads, int64_t len) { return at::randn({1, heads, len, d}, bf); };
    const at::Tensor q0 = seq(h, ctx), k0 = seq(hkv, ctx), v0 = seq(hkv, ctx);
    const at::Tensor q = seq(h, t), k = seq(hkv, t), v = seq(hkv, t);
    const double tok = double(t) * h;
    // The prompt's q, k, v read and y written, the float32 state read and written.
    const double io = 4.0 * tok * d * 2 + 2.0 * h * (f * d + f) * 4;
    const double flops = tok * 2.0 * (64.0 * f + 64.0 * d + 2.0 * f * d + 2.0 * d * fh);
    const lk::lizard::Weights czw{dmaps, zw.meta_logits, zw.alpha};
    const lk::lizard::Inputs z0 = lizard_inputs(1, hkv, ctx), z = lizard_inputs(1, hkv, t);
    for (const bool cuda : {true, false}) {
      lk::detail::SetCudaAttentionEnabled(cuda);
      const char* impl = cuda ? "cuda" : "libtorch";
      const int reps = cuda ? 10 : 3;
      const lk::linear_attention::State s_lin =
          lk::linear_attention::Prefill(q0, k0, v0, dmaps).state;
      Row r{"continue_linear", impl, t};
      r.ms = TimeMs([&] { lk::linear_attention::Prefill(q, k, v, dmaps, {}, &s_lin); }, reps);
      r.bytes = io;
      r.flops = flops;
      Add(rows, ceil, r);
      const lk::lolcats::State s_lol = lk::lolcats::Prefill(q0, k0, v0, dlw, lo).state;
      Row r2{"continue_lolcats", impl, t};
      r2.ms = TimeMs([&] { lk::lolcats::Prefill(q, k, v, dlw, lo, &s_lol); }, reps);
      r2.bytes = io + 2.0 * hkv * w * d * 2;
      r2.flops = flops + tok * 2.0 * 2.0 * 2.0 * w * d;
      Add(rows, ceil, r2);
      const lk::lizard::State s_liz = lk::lizard::Prefill(z0, czw, zo).state;
      Row r3{"continue_lizard", impl, t};
      r3.ms = TimeMs([&] { lk::lizard::Prefill(z, czw, zo, &s_liz); }, reps);
      r3.bytes = io + 2.0 * hkv * zo.window * d * 2 + 2.0 * tok * d * 2;
      r3.flops = flops + tok * 2.0 * 2.0 * 2.0 * zo.window * d;
      Add(rows, ceil, r3);
    }
    lk::detail::SetCudaAttentionEnabled(true);
  }
  WriteJson(path, rows, ceil, device);
  std::printf("wrote %s\n", path.c_str());
  return 0;
}
