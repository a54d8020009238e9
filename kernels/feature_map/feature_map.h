// Feature maps phi for linear attention, applied per head to q or k.
//
//  - Hedgehog (LoLCATs, Lizard): phi(x) = [softmax(x W_h), softmax(-x W_h)],
//    W_h a per-head [D, F] matrix without bias, so 2F features (F = 64 gives
//    128). Each half sums to 1, so phi(x) > 0 and phi(q).phi(k) > 0 unless a
//    softmax underflows. No clamp is applied (the LoLCATs code clamps at 1e-12);
//    the attention ops put their own eps into denominators that need one.
//  - EluPlusOne (the fixed baseline map, Katharopoulos et al. 2020,
//    "Transformers are RNNs"): phi(x) = elu(x) + 1 elementwise, D features,
//    strictly positive, no parameters.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace linearize::kernels {

enum class FeatureMapKind { kHedgehog, kEluPlusOne };

// The pair of maps an attention layer uses: one for queries, one for keys.
struct FeatureMaps {
  FeatureMapKind kind = FeatureMapKind::kHedgehog;
  at::Tensor q_weight;  // kHedgehog: [Hq, D, F]; undefined for kEluPlusOne
  // kHedgehog: [Hq, D, F] (one map per query head, as LoLCATs does after
  // repeating kv heads) or [Hkv, D, F] (one per kv head, shared by its group).
  at::Tensor k_weight;
};

// x: [B, H, T, D], weight: [H, D, F] -> [B, H, T, 2F] in x's dtype (weight is
// cast to it). Differentiable. Training on CUDA in bfloat16, or float32 under
// CUDA autocast, runs on the kernels and returns bfloat16 (as autocast's
// matmul would).
at::Tensor HedgehogFeatureMap(const at::Tensor& x, const at::Tensor& weight);

// x: [..., D] -> elu(x) + 1, same shape and dtype.
at::Tensor EluPlusOneFeatureMap(const at::Tensor& x);

// Number of features the maps produce for head dimension head_dim.
int64_t FeatureDim(const FeatureMaps& maps, int64_t head_dim);

// Checks the maps against Hq query heads, Hkv kv heads and head dim D;
// `op` prefixes the message (e.g. "lolcats::ForwardParallel").
void CheckFeatureMaps(const char* op, const FeatureMaps& maps, int64_t hq, int64_t hkv,
                      int64_t head_dim);

// phi(q) for q [B, Hq, T, D] -> [B, Hq, T, F'] in q's dtype.
at::Tensor QueryFeatures(const FeatureMaps& maps, const at::Tensor& q);

// phi(k) for k [B, Hkv, T, D], expanded to the Hq query heads (query head h
// uses kv head h / (Hq / Hkv)) -> [B, Hq, T, F'] in k's dtype.
at::Tensor KeyFeatures(const FeatureMaps& maps, const at::Tensor& k, int64_t hq);

// phi(k) at k's own Hkv heads, [B, Hkv, T, F'], where the map runs per kv
// head (elu+1, or Hedgehog weights [Hkv, D, F]); undefined where it runs per
// query head (weights [Hq, D, F]: KeyFeatures maps the expanded k).
at::Tensor KeyFeaturesAtKvHeads(const FeatureMaps& maps, const at::Tensor& k);

}  // namespace linearize::kernels
