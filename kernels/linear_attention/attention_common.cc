#include "kernels/linear_attention/attention_common.h"

#include <ATen/ATen.h>

#include <vector>

namespace linearize::kernels::detail {

at::ScalarType ComputeType(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

QkvDims CheckQkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined(), op, ": q, k and v must be defined");
  TORCH_CHECK(q.dim() == 4, op, ": q must be [B, Hq, T, D], got ", q.sizes());
  TORCH_CHECK(k.dim() == 4, op, ": k must be [B, Hkv, T, D], got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), op, ": v must have k's shape ", k.sizes(), ", got ",
              v.sizes());
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3), op,
              ": k must be [B, Hkv, T, D] with q's B, T and D (q is ", q.sizes(), "), got ",
              k.sizes());
  TORCH_CHECK(k.size(1) >= 1 && q.size(1) % k.size(1) == 0, op,
              ": query heads must be a multiple of kv heads, got q ", q.sizes(), " and k ",
              k.sizes());
  TORCH_CHECK(q.size(3) >= 1, op, ": head dim must be >= 1, got q ", q.sizes());
  TORCH_CHECK(at::isFloatingType(q.scalar_type()), op, ": q must be floating point, got ",
              q.scalar_type());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
              ": q, k, v must share a dtype, got ", q.scalar_type(), ", ", k.scalar_type(), ", ",
              v.scalar_type());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), op,
              ": q, k, v must be on one device, got ", q.device(), ", ", k.device(), ", ",
              v.device());
  return QkvDims{q.size(0), q.size(1), k.size(1), q.size(2), q.size(3)};
}

void CheckHeadParam(const char* op, const char* name, const at::Tensor& t, int64_t hq,
                    int64_t extra, const at::Device& device) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be defined");
  if (extra > 0) {
    TORCH_CHECK(t.dim() == 2 && t.size(0) == hq && t.size(1) == extra, op, ": ", name, " must be [",
                hq, ", ", extra, "], got ", t.sizes());
  } else {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == hq, op, ": ", name, " must be [", hq, "], got ",
                t.sizes());
  }
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be floating point, got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), " but q is on ", device);
}

void CheckChunk(const char* op, int64_t chunk) {
  TORCH_CHECK(chunk >= 1, op, ": chunk must be >= 1, got ", chunk);
}

at::Tensor ExpandKvHeads(const at::Tensor& x, int64_t q_heads) {
  const int64_t group = q_heads / x.size(1);
  return group == 1 ? x : at::repeat_interleave(x, group, /*dim=*/1);
}

at::Tensor SumToKvHeads(const at::Tensor& x, int64_t kv_heads) {
  const int64_t q_heads = x.size(1);
  if (kv_heads == q_heads) return x;
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes[1] = q_heads / kv_heads;
  sizes.insert(sizes.begin() + 1, kv_heads);
  return x.reshape(sizes).sum(2);
}

}  // namespace linearize::kernels::detail
