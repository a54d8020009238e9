// How many CTAs of a kernel fit on one SM (.cu only): the chunked kernels'
// block plans (chunk_plan.h) weigh their passes by it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

namespace linearize::kernels {

// CTAs of `threads` threads and `bytes` of dynamic shared memory per SM (at
// least 1); raises the kernel's dynamic shared-memory limit to `bytes` first.
template <typename Kernel>
int CtasPerSm(Kernel kernel, int threads, int bytes) {
  int blocks = 1;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, bytes);
  return std::max(1, blocks);
}

}  // namespace linearize::kernels
