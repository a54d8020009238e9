// Hedgehog and elu+1 feature maps: plain differentiable LibTorch.
#include "kernels/feature_map/feature_map.h"

#include <ATen/ATen.h>

#include "kernels/linear_attention/attention_common.h"

#ifdef LINEARIZE_WITH_CUDA
#include "kernels/feature_map/hedgehog_dispatch.h"
#include "kernels/feature_map/hedgehog_grad.h"
#endif

namespace linearize::kernels {
namespace {

const char* KindName(FeatureMapKind kind) {
  return kind == FeatureMapKind::kHedgehog ? "hedgehog" : "elu+1";
}

void CheckHedgehogWeight(const char* op, const char* name, const at::Tensor& w, int64_t heads,
                         int64_t head_dim) {
  TORCH_CHECK(w.defined(), op, ": hedgehog feature map needs ", name, " [H, D, F]");
  TORCH_CHECK(w.dim() == 3 && w.size(0) == heads && w.size(1) == head_dim && w.size(2) >= 1, op,
              ": ", name, " must be [", heads, ", ", head_dim, ", F] with F >= 1, got ", w.sizes());
  TORCH_CHECK(at::isFloatingType(w.scalar_type()), op, ": ", name, " must be floating point, got ",
              w.scalar_type());
}

}  // namespace

at::Tensor HedgehogFeatureMap(const at::Tensor& x, const at::Tensor& weight) {
  TORCH_CHECK(x.dim() == 4, "HedgehogFeatureMap: x must be [B, H, T, D], got ", x.sizes());
  CheckHedgehogWeight("HedgehogFeatureMap", "weight", weight, x.size(1), x.size(3));
  TORCH_CHECK(weight.device() == x.device(), "HedgehogFeatureMap: weight is on ", weight.device(),
              " but x is on ", x.device());
#ifdef LINEARIZE_WITH_CUDA
  // CUDA kernels when they cover the inputs: with autograd (training,
  // hedgehog_grad.h), else the forward alone (hedgehog_cuda.cu).
  if (std::optional<at::Tensor> y = detail::HedgehogFeatureMapTrainCuda(x, weight)) return *y;
  if (std::optional<at::Tensor> y = detail::HedgehogFeatureMapCuda(x, weight)) return *y;
#endif
  // [B, H, T, D] @ [1, H, D, F] -> [B, H, T, F]
  const at::Tensor logits = at::matmul(x, weight.to(x.scalar_type()).unsqueeze(0));
  return at::cat({at::softmax(logits, -1), at::softmax(-logits, -1)}, -1);
}

at::Tensor EluPlusOneFeatureMap(const at::Tensor& x) { return at::elu(x) + 1; }

int64_t FeatureDim(const FeatureMaps& maps, int64_t head_dim) {
  if (maps.kind == FeatureMapKind::kEluPlusOne) return head_dim;
  TORCH_CHECK(maps.q_weight.defined() && maps.q_weight.dim() == 3,
              "FeatureDim: hedgehog q_weight must be [H, D, F]");
  return 2 * maps.q_weight.size(2);
}

void CheckFeatureMaps(const char* op, const FeatureMaps& maps, int64_t hq, int64_t hkv,
                      int64_t head_dim) {
  if (maps.kind == FeatureMapKind::kEluPlusOne) {
    TORCH_CHECK(!maps.q_weight.defined() && !maps.k_weight.defined(), op, ": the ",
                KindName(maps.kind), " feature map takes no weights");
    return;
  }
  CheckHedgehogWeight(op, "q_weight", maps.q_weight, hq, head_dim);
  const at::Tensor& kw = maps.k_weight;
  TORCH_CHECK(kw.defined(), op, ": hedgehog feature map needs k_weight [H, D, F]");
  TORCH_CHECK(kw.dim() == 3 && (kw.size(0) == hq || kw.size(0) == hkv) && kw.size(1) == head_dim &&
                  kw.size(2) >= 1,
              op, ": k_weight must be [", hq, " or ", hkv, ", ", head_dim, ", F], got ",
              kw.sizes());
  TORCH_CHECK(at::isFloatingType(kw.scalar_type()), op, ": k_weight must be floating point, got ",
              kw.scalar_type());
  TORCH_CHECK(maps.k_weight.size(2) == maps.q_weight.size(2), op,
              ": q_weight and k_weight must have the same F, got ", maps.q_weight.sizes(), " and ",
              maps.k_weight.sizes());
}

at::Tensor QueryFeatures(const FeatureMaps& maps, const at::Tensor& q) {
  if (maps.kind == FeatureMapKind::kEluPlusOne) return EluPlusOneFeatureMap(q);
  return HedgehogFeatureMap(q, maps.q_weight);
}

at::Tensor KeyFeaturesAtKvHeads(const FeatureMaps& maps, const at::Tensor& k) {
  if (maps.kind == FeatureMapKind::kEluPlusOne) return EluPlusOneFeatureMap(k);
  if (maps.k_weight.size(0) == k.size(1)) return HedgehogFeatureMap(k, maps.k_weight);
  return at::Tensor();
}

at::Tensor KeyFeatures(const FeatureMaps& maps, const at::Tensor& k, int64_t hq) {
  const at::Tensor at_kv_heads = KeyFeaturesAtKvHeads(maps, k);
  if (at_kv_heads.defined()) return detail::ExpandKvHeads(at_kv_heads, hq);
  return HedgehogFeatureMap(detail::ExpandKvHeads(k, hq), maps.k_weight);
}

}  // namespace linearize::kernels
