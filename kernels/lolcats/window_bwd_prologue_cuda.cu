// The window backward's prologue: one warp per row, D / 32 elements a lane,
// two warp-wide dot products (dy . y, and dy . lin_num for LoLCATs), all in
// float32. Memory-bound: reads dy, y (and lin_num) once, writes dN once or
// twice.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/lolcats/window_bwd_prologue_params.h"

namespace linearize::kernels {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ float Load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ float Load(const float* p, int64_t i) { return p[i]; }

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// LinT: lin_num's element type (void: no linear terms).
template <typename DyT, int D, typename LinT>
__global__ void __launch_bounds__(32 * kWarps) PrologueKernel(const WindowBwdPrologueParams p) {
  constexpr bool kLinear = !std::is_void_v<LinT>;
  constexpr int E = D / 32;
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  const int64_t base = row * D + lane;  // element e of this lane: base + 32 e (coalesced)
  const DyT* dy = static_cast<const DyT*>(p.dy);
  const __nv_bfloat16* y = static_cast<const __nv_bfloat16*>(p.y);
  float g[E], dot_y = 0.f, dot_lin = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    g[e] = Load(dy, base + 32 * e);
    dot_y += g[e] * Load(y, base + 32 * e);
    if constexpr (kLinear) {
      dot_lin += g[e] * Load(static_cast<const LinT*>(p.lin_num), base + 32 * e);
    }
  }
  dot_y = WarpSum(dot_y);
  if constexpr (kLinear) dot_lin = WarpSum(dot_lin);
  float a = 1.f;
  if (p.scale != nullptr) {
    a = p.scale[(row / p.length) % p.heads];
    if (lane == 0) p.dy_dot_y[row] = dot_y;
    dot_y *= a;
  }
  const float inv_z = 1.f / p.z[row];
  const float a_inv_z = a * inv_z;
  const float d_den = -dot_y * inv_z;
  __nv_bfloat16* dn_b = static_cast<__nv_bfloat16*>(p.d_num_bf16);
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const float dn = g[e] * a_inv_z;
    dn_b[base + 32 * e] = __float2bfloat16(dn);
    if constexpr (std::is_same_v<LinT, float>) p.d_num[base + 32 * e] = dn;
  }
  if (lane == 0) {
    p.d_den[row] = d_den;
    if constexpr (kLinear) p.dc[row] = dot_lin * a_inv_z + d_den * p.lin_den[row];
  }
}

template <typename DyT, int D>
const char* LaunchTyped(const WindowBwdPrologueParams& p) {
  const dim3 grid(static_cast<unsigned>((p.rows + kWarps - 1) / kWarps));
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  if (p.lin_num == nullptr) {
    PrologueKernel<DyT, D, void><<<grid, 32 * kWarps, 0, stream>>>(p);
  } else if (p.lin_num_bf16) {
    PrologueKernel<DyT, D, __nv_bfloat16><<<grid, 32 * kWarps, 0, stream>>>(p);
  } else {
    PrologueKernel<DyT, D, float><<<grid, 32 * kWarps, 0, stream>>>(p);
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename DyT>
const char* LaunchDim(const WindowBwdPrologueParams& p) {
  return p.head_dim == 64 ? LaunchTyped<DyT, 64>(p) : LaunchTyped<DyT, 128>(p);
}

}  // namespace

bool WindowBwdPrologueSupported(const WindowBwdPrologueParams& p) {
  return (p.head_dim == 64 || p.head_dim == 128) && p.rows >= 1 &&
         (p.rows + kWarps - 1) / kWarps <= 0x7fffffff;
}

const char* LaunchWindowBwdPrologue(const WindowBwdPrologueParams& p) {
  if (!WindowBwdPrologueSupported(p)) return "window backward prologue: unsupported sizes";
  if (p.scale != nullptr && (p.heads < 1 || p.length < 1 || p.dy_dot_y == nullptr ||
                             p.rows % (p.heads * p.length) != 0)) {
    return "window backward prologue: scale needs heads, length and dy_dot_y";
  }
  if (p.dy == nullptr || p.y == nullptr || p.z == nullptr || p.d_num_bf16 == nullptr ||
      p.d_den == nullptr ||
      (p.lin_num != nullptr && (p.lin_den == nullptr || p.dc == nullptr ||
                                (!p.lin_num_bf16 && p.d_num == nullptr)))) {
    return "window backward prologue: missing pointer";
  }
  return p.dy_f32 ? LaunchDim<float>(p) : LaunchDim<__nv_bfloat16>(p);
}

}  // namespace linearize::kernels
