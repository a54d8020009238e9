// Backward of the Hedgehog feature map to its logits: one warp per row. The
// row's 2 Fh features sit E = 2 Fh / 32 to a lane, so lanes 0-15 hold the
// softmax(l) half and lanes 16-31 the softmax(-l) half; each half's dot
// product <d, phi> is a 16-lane reduction, and lane i + 16's term is
// subtracted from lane i's. Math in float32; memory-bound (reads phi and
// d_phi once, writes dl once).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/feature_map/hedgehog_params.h"

namespace linearize::kernels {
namespace {

constexpr int kWarps = 8;

template <int E>
struct alignas(2 * E) Pack {
  __nv_bfloat16 v[E];
};

template <int FH>
__global__ void __launch_bounds__(32 * kWarps) HedgehogBwdKernel(const HedgehogBwdParams p) {
  constexpr int E = 2 * FH / 32;
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  const int64_t at = row * (2 * FH) + lane * E;
  const Pack<E> phi =
      *reinterpret_cast<const Pack<E>*>(static_cast<const __nv_bfloat16*>(p.phi) + at);
  const Pack<E> dphi =
      *reinterpret_cast<const Pack<E>*>(static_cast<const __nv_bfloat16*>(p.d_phi) + at);
  float f[E], g[E], dot = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    f[e] = __bfloat162float(phi.v[e]);
    g[e] = __bfloat162float(dphi.v[e]);
    dot += f[e] * g[e];
  }
#pragma unroll
  for (int off = 1; off < 16; off <<= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
  float dl[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const float term = f[e] * (g[e] - dot);
    dl[e] = term - __shfl_xor_sync(0xffffffffu, term, 16);  // lanes < 16: p term - n term
  }
  if (lane < 16) {
    Pack<E> out;
#pragma unroll
    for (int e = 0; e < E; ++e) out.v[e] = __float2bfloat16(dl[e]);
    *reinterpret_cast<Pack<E>*>(static_cast<__nv_bfloat16*>(p.d_logits) + row * FH + lane * E) =
        out;
  }
}

template <int FH>
const char* Launch(const HedgehogBwdParams& p) {
  const dim3 grid(static_cast<unsigned>((p.rows + kWarps - 1) / kWarps));
  HedgehogBwdKernel<FH><<<grid, 32 * kWarps, 0, static_cast<cudaStream_t>(p.stream)>>>(p);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

bool HedgehogBwdSupported(const HedgehogBwdParams& p) {
  return (p.half_features == 32 || p.half_features == 64) && p.rows >= 1 &&
         (p.rows + kWarps - 1) / kWarps <= 0x7fffffff;
}

const char* LaunchHedgehogBwd(const HedgehogBwdParams& p) {
  if (!HedgehogBwdSupported(p)) return "Hedgehog backward: unsupported sizes";
  return p.half_features == 64 ? Launch<64>(p) : Launch<32>(p);
}

}  // namespace linearize::kernels
