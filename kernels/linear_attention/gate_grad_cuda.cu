// gate_grad_params.h's two kernels: segment sums, then suffix sums.
#include <cuda_runtime.h>

#include "kernels/linear_attention/gate_grad_params.h"

namespace linearize::kernels {
namespace {

constexpr int kThreads = 256, kPerThread = 4, kSegment = kThreads * kPerThread;

// sum over the query heads of gate row `row` (b G + g) of q_dot - k_dot at t.
__device__ __forceinline__ float RowDiff(const GateGradParams& p, int64_t row, int64_t t) {
  const int64_t group = p.heads / p.g_heads, b = row / p.g_heads, g = row % p.g_heads;
  float s = 0.f;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const int64_t at = (b * p.heads + h) * p.length + t;
    s += p.q_dot[at] - p.k_dot[at];
  }
  return s;
}

// The block's sum of x, in every thread.
__device__ float BlockSum(float x, float* shared) {
  for (int o = 16; o >= 1; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  __syncthreads();  // shared is reused across calls
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = x;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) s += shared[w];
  return s;
}

__global__ void __launch_bounds__(kThreads) SegmentSumsKernel(const GateGradParams p) {
  __shared__ float shared[kThreads / 32];
  const int64_t row = blockIdx.x, t0 = int64_t(blockIdx.y) * kSegment;
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t t = t0 + i * kThreads + threadIdx.x;
    if (t < p.length) s += RowDiff(p, row, t);
  }
  s = BlockSum(s, shared);
  if (threadIdx.x == 0) p.segment_sums[row * gridDim.y + blockIdx.y] = s;
}

// Each thread owns kPerThread consecutive positions of the segment: their
// suffix sums, plus the sums of the later threads' positions (a suffix scan
// over the warp, then over the warps) and of the later segments.
__global__ void __launch_bounds__(kThreads) SuffixSumsKernel(const GateGradParams p) {
  __shared__ float shared[kThreads / 32];
  const int64_t row = blockIdx.x, t0 = int64_t(blockIdx.y) * kSegment + kPerThread * threadIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float later = 0.f;  // the later segments' share, this thread's part of it
  for (int64_t s = blockIdx.y + 1 + threadIdx.x; s < gridDim.y; s += kThreads) {
    later += p.segment_sums[row * gridDim.y + s];
  }
  later = BlockSum(later, shared);
  float x[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    x[i] = t0 + i < p.length ? RowDiff(p, row, t0 + i) : 0.f;
  }
#pragma unroll
  for (int i = kPerThread - 2; i >= 0; --i) x[i] += x[i + 1];
  // Inclusive suffix scan of the threads' totals over the warp's lanes.
  float suffix = x[0];
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const float next = __shfl_down_sync(0xffffffffu, suffix, o);
    if (lane + o < 32) suffix += next;
  }
  const float warp_total = __shfl_sync(0xffffffffu, suffix, 0);
  __syncthreads();  // BlockSum's reads of shared are done
  if (lane == 0) shared[warp] = warp_total;
  __syncthreads();
  for (int w = warp + 1; w < kThreads / 32; ++w) later += shared[w];
  later += suffix - x[0];  // the warp's later lanes
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    if (t0 + i < p.length) p.d_log_gamma[row * p.length + t0 + i] = x[i] + later;
  }
}

}  // namespace

int64_t GateGradSegments(int64_t length) { return (length + kSegment - 1) / kSegment; }

const char* LaunchGateGrad(const GateGradParams& p) {
  if (p.q_dot == nullptr || p.k_dot == nullptr || p.d_log_gamma == nullptr ||
      p.segment_sums == nullptr) {
    return "GateGrad: q_dot, k_dot, d_log_gamma and segment_sums must be set";
  }
  if (p.batch < 1 || p.g_heads < 1 || p.heads % p.g_heads != 0 || p.length < 1) {
    return "GateGrad: batch, heads, g_heads, length (g_heads must divide heads)";
  }
  const int64_t rows = p.batch * p.g_heads, segments = GateGradSegments(p.length);
  // Rows on x (up to 2^31 - 1), segments on y.
  if (rows > 0x7fffffff || segments > 65535) return "GateGrad: too many rows or segments";
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(segments));
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  SegmentSumsKernel<<<grid, kThreads, 0, stream>>>(p);
  SuffixSumsKernel<<<grid, kThreads, 0, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace linearize::kernels
