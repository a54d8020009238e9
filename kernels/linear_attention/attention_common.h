// Argument checks and small helpers shared by the linear-attention families
// (linear_attention, lolcats, lizard). Internal to kernels/.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace linearize::kernels::detail {

// float64 inputs compute in float64; every other floating type in float32
// (the recurrent state is kept in this type too).
at::ScalarType ComputeType(at::ScalarType input);

// Sizes of a checked q [B, Hq, T, D], k/v [B, Hkv, T, D] triple.
struct QkvDims {
  int64_t batch = 0, q_heads = 0, kv_heads = 0, length = 0, head_dim = 0;
  int64_t group() const { return q_heads / kv_heads; }
};

// Checks ranks, matching sizes, Hq % Hkv == 0, floating dtype shared by all
// three, one device; messages start with `op` and print the shapes.
QkvDims CheckQkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Checks a per-query-head parameter: [Hq] (or [Hq, extra] when extra > 0).
void CheckHeadParam(const char* op, const char* name, const at::Tensor& t, int64_t hq,
                    int64_t extra, const at::Device& device);

// Checks a chunk size (>= 1).
void CheckChunk(const char* op, int64_t chunk);

// x [B, Hkv, ...] -> [B, Hq, ...]: query head h reads kv head h / (Hq / Hkv).
at::Tensor ExpandKvHeads(const at::Tensor& x, int64_t q_heads);

// The adjoint of ExpandKvHeads: x [B, Hq, ...] -> [B, Hkv, ...], each kv
// head the sum of its query heads (gradients per query head -> per kv head).
at::Tensor SumToKvHeads(const at::Tensor& x, int64_t kv_heads);

}  // namespace linearize::kernels::detail
