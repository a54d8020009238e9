// The probe's kernel (wgmma_probe.h): plain 16-byte copies into the
// swizzled layouts (or A's fragments loaded into registers), the products,
// the accumulators written out by their documented layout.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/linear_attention/wgmma.cuh"
#include "tests/gpu/wgmma_probe.h"

namespace linearize::testing {
namespace {

namespace wg = kernels::wgmma;
constexpr int kM = 64;
constexpr int kThreads = 128;  // one warpgroup

// Copies a row-major [rows][cols] bf16 matrix into 64-column swizzled slabs
// (slab s: columns 64 s .. 64 s + 63, rows * 128 bytes).
template <int kRows, int kCols>
__device__ void StageSwizzled(unsigned char* smem, const __nv_bfloat16* g) {
  constexpr int kChunks = kCols / 8;  // 16-byte chunks per row
  for (int i = threadIdx.x; i < kRows * kChunks; i += kThreads) {
    const int row = i / kChunks, col = (i % kChunks) * 8;
    const int slab = col / 64;
    *reinterpret_cast<uint4*>(smem + slab * kRows * 128 + wg::SwizzledOffset(row, col % 64)) =
        *reinterpret_cast<const uint4*>(g + row * kCols + col);
  }
}

template <int kN>
struct Mma;
template <>
struct Mma<64> {
  template <int kTransA, int kTransB>
  __device__ static void Smem(float (&d)[32], uint64_t a, uint64_t b) {
    wg::MmaAsyncM64N64<kTransA, kTransB>(d, a, b, 1);
  }
  template <int kTransB>
  __device__ static void Regs(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {
    wg::MmaAsyncRegAM64N64<kTransB>(d, a, b, 1);
  }
};
template <>
struct Mma<128> {
  template <int kTransA, int kTransB>
  __device__ static void Smem(float (&d)[64], uint64_t a, uint64_t b) {
    wg::MmaAsyncM64N128<kTransA, kTransB>(d, a, b, 1);
  }
  template <int kTransB>
  __device__ static void Regs(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
    wg::MmaAsyncRegAM64N128<kTransB>(d, a, b, 1);
  }
};

template <int kN, int kK, WgmmaA kA, bool kBMnMajor>
__global__ void __launch_bounds__(kThreads)
    WgmmaProbeKernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* c) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  // 1024-byte alignment for the swizzle atoms.
  unsigned char* base = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sa = base;                // K-major: [kK / 64][64 rows]; M-major: [kK rows]
  unsigned char* sb = base + kM * kK * 2;  // K-major: [kK / 64][kN rows]; MN: [kN / 64][kK rows]
  if constexpr (kA == WgmmaA::kKMajor) StageSwizzled<kM, kK>(sa, a);
  if constexpr (kA == WgmmaA::kMMajor) StageSwizzled<kK, kM>(sa, a);
  if constexpr (kBMnMajor) {
    StageSwizzled<kK, kN>(sb, b);
  } else {
    StageSwizzled<kN, kK>(sb, b);
  }
  wg::FenceProxyAsync();
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // A fragments straight from global memory (kRegisters), all k steps.
  uint32_t frag[kK / 16][4];
  if constexpr (kA == WgmmaA::kRegisters) {
    const int r0 = 16 * warp + g;
#pragma unroll
    for (int kk = 0; kk < kK / 16; ++kk) {
      const int c0 = 16 * kk + 2 * t;
      const auto at = [&](int r, int col) {
        return *reinterpret_cast<const uint32_t*>(a + r * kK + col);
      };
      frag[kk][0] = at(r0, c0);
      frag[kk][1] = at(r0 + 8, c0);
      frag[kk][2] = at(r0, c0 + 8);
      frag[kk][3] = at(r0 + 8, c0 + 8);
    }
  }

  float d[kN / 2];
#pragma unroll
  for (int i = 0; i < kN / 2; ++i) d[i] = 0.f;
  wg::Fence();
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    const int slab = kk / 4, in_slab = (kk % 4) * 32;  // 16 k = 32 bytes of a K-major row
    uint64_t db;
    if constexpr (kBMnMajor) {
      db = wg::Descriptor(sb + kk * 16 * 128, kK * 128, 1024);
    } else {
      db = wg::Descriptor(sb + slab * kN * 128 + in_slab, 16, 1024);
    }
    constexpr int kTransB = kBMnMajor ? 1 : 0;
    if constexpr (kA == WgmmaA::kRegisters) {
      Mma<kN>::template Regs<kTransB>(d, frag[kk], db);
    } else if constexpr (kA == WgmmaA::kMMajor) {
      Mma<kN>::template Smem<1, kTransB>(d, wg::Descriptor(sa + kk * 16 * 128, kK * 128, 1024), db);
    } else {
      Mma<kN>::template Smem<0, kTransB>(
          d, wg::Descriptor(sa + slab * kM * 128 + in_slab, 16, 1024), db);
    }
  }
  wg::Commit();
  wg::Wait<0>();
  wg::FenceOperands(d);

#pragma unroll
  for (int j = 0; j < kN / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + g + 8 * (e / 2), col = 8 * j + 2 * t + e % 2;
      c[row * kN + col] = d[4 * j + e];
    }
  }
#else
  __trap();  // wgmma needs the sm_90a target
#endif
}

template <int kN, int kK, WgmmaA kA, bool kBMnMajor>
const char* Launch(const void* a, const void* b, float* c, cudaStream_t stream) {
  const int bytes = (kM * kK + kN * kK) * 2 + 1024;
  auto* kernel = WgmmaProbeKernel<kN, kK, kA, kBMnMajor>;
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  kernel<<<1, kThreads, bytes, stream>>>(static_cast<const __nv_bfloat16*>(a),
                                         static_cast<const __nv_bfloat16*>(b), c);
  err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <int kN, int kK, WgmmaA kA>
const char* LaunchB(bool mn, const void* a, const void* b, float* c, cudaStream_t s) {
  return mn ? Launch<kN, kK, kA, true>(a, b, c, s) : Launch<kN, kK, kA, false>(a, b, c, s);
}

template <int kN, int kK>
const char* LaunchShape(WgmmaA a_mode, bool mn, const void* a, const void* b, float* c,
                        cudaStream_t s) {
  switch (a_mode) {
    case WgmmaA::kKMajor:
      return LaunchB<kN, kK, WgmmaA::kKMajor>(mn, a, b, c, s);
    case WgmmaA::kMMajor:
      return LaunchB<kN, kK, WgmmaA::kMMajor>(mn, a, b, c, s);
    case WgmmaA::kRegisters:
      return LaunchB<kN, kK, WgmmaA::kRegisters>(mn, a, b, c, s);
  }
  return "LaunchWgmmaProbe: unknown A mode";
}

}  // namespace

const char* LaunchWgmmaProbe(int n, int k, WgmmaA a_mode, bool b_mn_major, const void* a,
                             const void* b, float* c, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (n == 64 && k == 64) return LaunchShape<64, 64>(a_mode, b_mn_major, a, b, c, s);
  if (n == 64 && k == 128) return LaunchShape<64, 128>(a_mode, b_mn_major, a, b, c, s);
  if (n == 128 && k == 64) return LaunchShape<128, 64>(a_mode, b_mn_major, a, b, c, s);
  if (n == 128 && k == 128) return LaunchShape<128, 128>(a_mode, b_mn_major, a, b, c, s);
  return "LaunchWgmmaProbe: N and K must be 64 or 128";
}

}  // namespace linearize::testing
