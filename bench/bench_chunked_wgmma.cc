// The chunked linear attention's output on wgmma (sm90a/chunked_linear_wgmma.h)
// beside the mma.sync kernel (chunked_linear_params.h), same inputs, same
// call: bf16, F = D = 128, no gates, 32 heads, on given features, with the
// Hedgehog maps fused (raw q, k; Fh = 64), as LoLCATs' prefill (maps fused,
// keys delayed by the 64-token window, the window fused), gated on given
// features, and as Lizard's gated branch (maps fused, gated); B = 8 (one
// block per (b, h) fills an H100) and B = 1 (the two-pass split, each
// kernel with its own pass 1). Median of 20 timed runs after 3 warm-ups
// (CUDA events); prints a table, writes JSON to argv[1].
//   bench_chunked_wgmma [out.json]
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/linear_attention/chunked_linear_params.h"
#include "kernels/linear_attention/sm90a/chunked_linear_wgmma.h"

namespace {

using linearize::kernels::ChunkedLinearParams;

double MedianMs(const std::function<const char*()>& launch) {
  cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  for (int i = 0; i < 3; ++i) {
    if (const char* err = launch()) {
      std::fprintf(stderr, "launch failed: %s\n", err);
      return -1;
    }
  }
  std::vector<float> ms;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start, stream);
    launch();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "";
  const int64_t h = 32, f = 128, d = 128;
  std::string json = "[";
  std::printf("%7s %3s %8s %7s %14s %14s %8s %12s\n", "maps", "B", "T", "blocks", "mma.sync ms",
              "wgmma ms", "ratio", "max |dy|");
  const std::pair<int64_t, int64_t> shapes[] = {
      {8, 2048}, {8, 8192}, {8, 32768}, {1, 8192}, {1, 32768}};
  for (const std::string form : {"given", "fused", "lolcats", "gated", "lizard"}) {
    const bool fused = form == "fused" || form == "lolcats" || form == "lizard";
    const bool window = form == "lolcats", gated = form == "gated" || form == "lizard";
    for (const auto& [b, t] : shapes) {
      const at::TensorOptions bf = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
      // Features (positive), or raw q, k for the fused maps.
      const at::Tensor q =
          fused ? at::randn({b, h, t, d}, bf) : (at::rand({b, h, t, f}, bf) + 0.05);
      const at::Tensor k =
          fused ? at::randn({b, h, t, d}, bf) : (at::rand({b, h, t, f}, bf) + 0.05);
      const at::Tensor wq_t = at::randn({h, f / 2, d}, bf) / std::sqrt(double(d));
      const at::Tensor wk_t = at::randn({h, f / 2, d}, bf) / std::sqrt(double(d));
      const at::Tensor v = at::randn({b, h, t, d}, bf);
      const at::Tensor y_sync = at::empty({b, h, t, d}, bf), y_wg = at::empty({b, h, t, d}, bf);
      ChunkedLinearParams p;
      p.phi_q = q.data_ptr();
      p.phi_k = k.data_ptr();
      p.v = v.data_ptr();
      p.batch = b;
      p.heads = p.k_heads = p.v_heads = h;
      p.length = t;
      p.feature_dim = f;
      p.head_dim = d;
      p.type = linearize::kernels::ElementType::kBF16;
      if (fused) {
        p.q_weight_t = wq_t.data_ptr();
        p.k_weight_t = wk_t.data_ptr();
        p.k_weight_heads = h;
      }
      const at::Tensor gate = at::rand({h}, bf.dtype(at::kFloat));
      const at::Tensor log_gamma = -at::rand({b, h, t}, bf.dtype(at::kFloat)) * 0.1;
      if (gated) {
        p.log_gamma = log_gamma.data_ptr<float>();
        p.g_heads = h;
      }
      if (window) {
        p.key_delay = 64;
        p.window_gate = gate.data_ptr<float>();
        p.window_scale = static_cast<float>(1.0 / std::sqrt(double(d)));
      }
      p.stream = at::cuda::getCurrentCUDAStream().stream();
      int device = 0;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&p.sm_count, cudaDevAttrMultiProcessorCount, device);
      linearize::kernels::PlanChunkedLinear(p);
      at::Tensor workspace;
      if (const int64_t bytes = linearize::kernels::ChunkedLinearWorkspaceBytes(p); bytes > 0) {
        workspace = at::empty({bytes}, bf.dtype(at::kByte));
        p.workspace = workspace.data_ptr();
      }
      ChunkedLinearParams ps = p, pw = p;
      ps.y = y_sync.data_ptr();
      pw.y = y_wg.data_ptr();
      const double ms_sync = MedianMs([&] { return linearize::kernels::LaunchChunkedLinear(ps); });
      const double ms_wg =
          MedianMs([&] { return linearize::kernels::LaunchChunkedLinearWgmma(pw); });
      const double diff = (y_sync.to(at::kFloat) - y_wg.to(at::kFloat)).abs().max().item<double>();
      std::printf("%7s %3lld %8lld %7lld %14.3f %14.3f %8.2f %12.3e\n", form.c_str(),
                  static_cast<long long>(b), static_cast<long long>(t),
                  static_cast<long long>(p.blocks), ms_sync, ms_wg, ms_sync / ms_wg, diff);
      json += std::string(json.size() > 1 ? "," : "") + "{\"form\":\"" + form +
              "\",\"T\":" + std::to_string(t) + ",\"B\":" + std::to_string(b) +
              ",\"H\":" + std::to_string(h) + ",\"blocks\":" + std::to_string(p.blocks) +
              ",\"mma_sync_ms\":" + std::to_string(ms_sync) +
              ",\"wgmma_ms\":" + std::to_string(ms_wg) +
              ",\"max_abs_diff\":" + std::to_string(diff) + "}";
    }
  }
  json += "]\n";
  if (!out.empty()) std::ofstream(out) << json;
  return 0;
}
