// A probe of the wgmma helpers (kernels/linear_attention/wgmma.cuh): one
// warpgroup computes C[64][N] = A[64][K] B in float32 from bf16 operands,
// staged in 128-byte-swizzled shared memory (or A in registers): B read
// K-major (stored [N][K]) or MN-major (stored [K][N]). Test code: it pins the
// descriptors and the fragment layouts down before a kernel relies on them.
#pragma once

namespace linearize::testing {

enum class WgmmaA {
  kKMajor,     // stored [64][K], staged K-major
  kMMajor,     // stored [K][64], staged M-major (the transposed-A products)
  kRegisters,  // stored [64][K], read straight into mma.sync A fragments
};

// N and K: 64 or 128. Device pointers, row-major and contiguous; returns the
// launch error string, or nullptr.
const char* LaunchWgmmaProbe(int n, int k, WgmmaA a_mode, bool b_mn_major, const void* a,
                             const void* b, float* c, void* stream);

}  // namespace linearize::testing
