// The window backward's prologue: one warp per row, D / 32 consecutive
// elements a lane (one vector load or store per row and tensor: the rows
// must be 16-byte aligned), two warp-wide dot products (dy . y, and
// dy . lin_num for LoLCATs), all in float32. Memory-bound: reads dy, y (and
// lin_num) once, writes dN once or twice.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/linear_attention/tile_mma.cuh"
#include "kernels/lolcats/window_bwd_prologue_params.h"

namespace linearize::kernels {
namespace {

constexpr int kWarps = 8;

// E (2 or 4) consecutive elements at p, E-element aligned, in one load.
template <int E>
__device__ __forceinline__ void LoadRun(const __nv_bfloat16* p, float (&x)[E]) {
  static_assert(E == 2 || E == 4, "two or four elements a lane");
  uint32_t w[E / 2];
  if constexpr (E == 4) {
    const uint2 r = *reinterpret_cast<const uint2*>(p);
    w[0] = r.x, w[1] = r.y;
  } else {
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  }
#pragma unroll
  for (int i = 0; i < E / 2; ++i) {
    const float2 f = tiles::Unpack(w[i]);
    x[2 * i] = f.x, x[2 * i + 1] = f.y;
  }
}
template <int E>
__device__ __forceinline__ void LoadRun(const float* p, float (&x)[E]) {
  static_assert(E == 2 || E == 4, "two or four elements a lane");
  if constexpr (E == 4) {
    const float4 r = *reinterpret_cast<const float4*>(p);
    x[0] = r.x, x[1] = r.y, x[2] = r.z, x[3] = r.w;
  } else {
    const float2 r = *reinterpret_cast<const float2*>(p);
    x[0] = r.x, x[1] = r.y;
  }
}
template <int E>
__device__ __forceinline__ void StoreRun(__nv_bfloat16* p, const float (&x)[E]) {
  if constexpr (E == 4) {
    __stwb(reinterpret_cast<uint2*>(p),
           make_uint2(tiles::Pack(x[0], x[1]), tiles::Pack(x[2], x[3])));
  } else {
    *reinterpret_cast<uint32_t*>(p) = tiles::Pack(x[0], x[1]);
  }
}
template <int E>
__device__ __forceinline__ void StoreRun(float* p, const float (&x)[E]) {
  if constexpr (E == 4) {
    __stwb(reinterpret_cast<float4*>(p), make_float4(x[0], x[1], x[2], x[3]));
  } else {
    __stwb(reinterpret_cast<float2*>(p), make_float2(x[0], x[1]));
  }
}

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
  // The lane's E consecutive elements: a warp's load is the whole row.
  const int64_t base = row * D + E * lane;
  float g[E], y[E], lin[E], dot_y = 0.f, dot_lin = 0.f;
  LoadRun<E>(static_cast<const DyT*>(p.dy) + base, g);
  LoadRun<E>(static_cast<const __nv_bfloat16*>(p.y) + base, y);
  if constexpr (kLinear) LoadRun<E>(static_cast<const LinT*>(p.lin_num) + base, lin);
#pragma unroll
  for (int e = 0; e < E; ++e) {
    dot_y += g[e] * y[e];
    if constexpr (kLinear) dot_lin += g[e] * lin[e];
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
  float dn[E];
#pragma unroll
  for (int e = 0; e < E; ++e) dn[e] = g[e] * a_inv_z;
  StoreRun<E>(dn_b + base, dn);
  if constexpr (std::is_same_v<LinT, float>) StoreRun<E>(p.d_num + base, dn);
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
  for (const void* t : {p.dy, p.y, p.lin_num, static_cast<const void*>(p.d_num_bf16),
                        static_cast<const void*>(p.d_num)}) {
    if (reinterpret_cast<uintptr_t>(t) % 16 != 0) {
      return "window backward prologue: a tensor is not 16-byte aligned";
    }
  }
  return p.dy_f32 ? LaunchDim<float>(p) : LaunchDim<__nv_bfloat16>(p);
}

}  // namespace linearize::kernels
