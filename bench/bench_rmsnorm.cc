// RMSNorm throughput on whatever device is available (CUDA when built with
// it and present, else CPU). Reports bytes/s of input read + output written.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include "kernels/rmsnorm/rmsnorm.h"

namespace {

void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = state.range(1);
  const auto device = at::hasCUDA() ? at::kCUDA : at::kCPU;
  const auto dtype = at::hasCUDA() ? at::kBFloat16 : at::kFloat;
  const at::Tensor x = at::randn({rows, dim}, at::TensorOptions().device(device).dtype(dtype));
  const at::Tensor w = at::randn({dim}, x.options());
  for (auto _ : state) {
    at::Tensor y = linearize::kernels::RmsNorm(x, w, 1e-5);
    if (device == at::kCUDA) y.cpu();  // includes a sync; small next to large rows
    benchmark::DoNotOptimize(y);
  }
  state.SetBytesProcessed(state.iterations() * 2 * x.numel() * x.element_size());
  state.SetLabel(device == at::kCUDA ? "cuda-bf16" : "cpu-f32");
}
BENCHMARK(BM_RmsNorm)->Args({1, 576})->Args({512, 576})->Args({4096, 4096});

}  // namespace

BENCHMARK_MAIN();
