// The Hedgehog feature-map kernels through HedgehogFeatureMap against the
// float64 CPU result on the same (rounded) inputs: the forward, and in
// training the forward and backward (gradients to x and the weight, with x
// passed through to a second use or not), and the backward from the
// logits' gradient.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "kernels/feature_map/feature_map.h"
#include "kernels/feature_map/hedgehog_grad.h"
#include "tests/gpu/attention_gpu_util.h"

namespace linearize::kernels {
namespace {

using testing::OnGpu;
using testing::Seen;

struct Case {
  int64_t b, h, t, d, fh;
};

class HedgehogGpu : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

TEST_P(HedgehogGpu, MatchesFloat64Reference) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, dtype] = GetParam();
  at::manual_seed(11 + c.t + c.d + c.fh);
  const at::Tensor x = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor w = at::randn({c.h, c.d, c.fh}, at::kDouble) / std::sqrt(double(c.d));
  const at::Tensor ref = HedgehogFeatureMap(Seen(x, dtype), Seen(w, dtype));
  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  const at::Tensor y = HedgehogFeatureMap(OnGpu(x, dtype), OnGpu(w, dtype));
  EXPECT_EQ(launches.Launches(), 1) << "the CUDA kernel did not run";
  ASSERT_TRUE(testing::AllFinite(y));
  EXPECT_EQ(y.scalar_type(), dtype);
  EXPECT_LT(testing::RelativeError(y, ref), testing::Tol(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HedgehogGpu,
    ::testing::Combine(::testing::Values(Case{1, 2, 1, 64, 32}, Case{2, 3, 100, 128, 64},
                                         Case{1, 2, 130, 64, 64}, Case{2, 1, 65, 128, 32}),
                       ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, at::ScalarType>>& info) {
      const Case& c = std::get<0>(info.param);
      return "T" + std::to_string(c.t) + "_D" + std::to_string(c.d) + "_Fh" +
             std::to_string(c.fh) + "_" + testing::DtypeName(std::get<1>(info.param));
    });

struct Grads {
  at::Tensor phi, dx, dw;
};

// phi and the gradients of sum(phi * r) for x and w made leaves in `x_type`
// and `w_type` on `device`.
Grads TrainMap(const at::Tensor& x, const at::Tensor& w, const at::Tensor& r,
               at::ScalarType x_type, at::ScalarType w_type, at::Device device) {
  const at::Tensor xl = x.to(x_type).to(device).detach().requires_grad_(true);
  const at::Tensor wl = w.to(w_type).to(device).detach().requires_grad_(true);
  const at::Tensor phi = HedgehogFeatureMap(xl, wl);
  (phi.to(r.scalar_type()) * r.to(device)).sum().backward();
  return {phi.detach(), xl.grad(), wl.grad()};
}

// Training: bf16 x with a bf16 or float32 weight (the converter's float32
// parameters under autocast), against float64 autograd through the LibTorch
// form on the same rounded inputs.
class HedgehogGradGpu : public ::testing::TestWithParam<std::tuple<Case, bool>> {};

TEST_P(HedgehogGradGpu, MatchesFloat64Autograd) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const auto [c, autocast] = GetParam();
  at::manual_seed(29 + c.t + c.d + c.fh + c.b);
  const at::Tensor x = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor w = at::randn({c.h, c.d, c.fh}, at::kDouble) / std::sqrt(double(c.d));
  const at::Tensor r = at::randn({c.b, c.h, c.t, 2 * c.fh}, at::kDouble);
  const Grads ref = TrainMap(Seen(x, at::kBFloat16), Seen(w, at::kBFloat16), r, at::kDouble,
                             at::kDouble, at::kCPU);
  testing::PoisonCudaAllocator();
  const testing::LaunchCounter launches;
  Grads got;
  if (autocast) {  // float32 x and weight, as the converter's autocast sees them
    const testing::CudaBf16Autocast scope;
    got = TrainMap(x, w, r.to(at::kFloat), at::kFloat, at::kFloat, at::kCUDA);
  } else {
    got = TrainMap(x, w, r.to(at::kFloat), at::kBFloat16, at::kBFloat16, at::kCUDA);
  }
  EXPECT_EQ(launches.Launches(), 2) << "the forward and backward kernels, once each";
  for (const at::Tensor* t : {&got.phi, &got.dx, &got.dw}) {
    ASSERT_TRUE(t->defined());
    ASSERT_TRUE(testing::AllFinite(*t)) << "unwritten (NaN-poisoned) or non-finite output";
  }
  EXPECT_EQ(got.phi.scalar_type(), at::kBFloat16);
  EXPECT_EQ(got.dx.scalar_type(), autocast ? at::kFloat : at::kBFloat16);
  EXPECT_EQ(got.dw.sizes(), w.sizes());
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(testing::RelativeError(got.phi, ref.phi), tol) << "phi";
  EXPECT_LT(testing::RelativeError(got.dx, ref.dx), tol) << "d x";
  EXPECT_LT(testing::RelativeError(got.dw, ref.dw), tol) << "d weight";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, HedgehogGradGpu,
    ::testing::Combine(::testing::Values(Case{1, 2, 1, 64, 32}, Case{2, 3, 100, 128, 64},
                                         Case{1, 2, 1000, 64, 64}, Case{2, 1, 65, 128, 32},
                                         // D = 64 with Fh = 32 over several tiles
                                         Case{2, 3, 300, 64, 32},
                                         // several tiles per CTA, dW summed over CTAs
                                         Case{2, 8, 2050, 128, 64}),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<Case, bool>>& info) {
      const Case& c = std::get<0>(info.param);
      return "T" + std::to_string(c.t) + "_D" + std::to_string(c.d) + "_Fh" +
             std::to_string(c.fh) + (std::get<1>(info.param) ? "_autocast" : "_bf16");
    });

// x passed through to a second use (as LoLCATs' window reads q and k): its
// gradient there is added into dx inside the backward kernel.
TEST(HedgehogGradGpuPassing, AddsThePassedThroughGradient) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(17);
  const Case c{2, 4, 300, 128, 64};
  const at::Tensor x = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor w = at::randn({c.h, c.d, c.fh}, at::kDouble) / std::sqrt(double(c.d));
  const at::Tensor r = at::randn({c.b, c.h, c.t, 2 * c.fh}, at::kDouble);
  const at::Tensor r_pass = at::randn({c.b, c.h, c.t, c.d}, at::kDouble);
  const Grads ref = TrainMap(Seen(x, at::kBFloat16), Seen(w, at::kBFloat16), r, at::kDouble,
                             at::kDouble, at::kCPU);
  testing::PoisonCudaAllocator();
  const at::Tensor xl = x.to(at::kBFloat16).cuda().detach().requires_grad_(true);
  const at::Tensor wl = w.to(at::kBFloat16).cuda().detach().requires_grad_(true);
  const auto out = detail::HedgehogFeatureMapTrainCudaPassing(xl, wl);
  ASSERT_TRUE(out.has_value()) << "the kernels declined";
  const auto& [phi, x_pass] = *out;
  ((phi.to(at::kFloat) * r.to(at::kFloat).cuda()).sum() +
   (x_pass.to(at::kFloat) * r_pass.to(at::kFloat).cuda()).sum())
      .backward();
  ASSERT_TRUE(testing::AllFinite(xl.grad()) && testing::AllFinite(wl.grad()));
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(testing::RelativeError(xl.grad(), ref.dx + Seen(r_pass, at::kBFloat16)), tol) << "d x";
  EXPECT_LT(testing::RelativeError(wl.grad(), ref.dw), tol) << "d weight";
}

// The backward from the logits' gradient dl (LoLCATs' fused training step,
// where the chunked backward forms it): dx = d_pass + dl W^T and
// dW = sum over batch and rows of x^T dl, against float64 on the same
// rounded inputs; with a passed-through gradient when B = 2; then dW alone.
class HedgehogFromLogitsGpu : public ::testing::TestWithParam<Case> {};

TEST_P(HedgehogFromLogitsGpu, MatchesFloat64) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(41 + c.t + c.d + c.fh + c.b);
  const at::Tensor x = at::randn({c.b, c.h, c.t, c.d}, at::kDouble) * 1.5;
  const at::Tensor w = at::randn({c.h, c.d, c.fh}, at::kDouble) / std::sqrt(double(c.d));
  const at::Tensor dl = at::randn({c.b, c.h, c.t, c.fh}, at::kDouble);
  const bool pass = c.b == 2;
  const at::Tensor d_pass = at::randn({c.b, c.h, c.t, c.d}, at::kDouble);
  const at::Tensor xs = Seen(x, at::kBFloat16), ws = Seen(w, at::kBFloat16),
                   dls = Seen(dl, at::kBFloat16);
  at::Tensor ref_dx = at::matmul(dls, ws.transpose(1, 2));  // [B, H, T, D]
  if (pass) ref_dx = ref_dx + Seen(d_pass, at::kBFloat16);
  const at::Tensor ref_dw = at::matmul(xs.transpose(2, 3), dls).sum(0);  // [H, D, Fh]
  testing::PoisonCudaAllocator();
  const at::Tensor w_t = OnGpu(w, at::kBFloat16).transpose(1, 2).contiguous();
  const detail::HedgehogGrads got =
      detail::HedgehogBackwardFromLogitsCuda(OnGpu(x, at::kBFloat16), w_t, OnGpu(dl, at::kBFloat16),
                                             pass ? OnGpu(d_pass, at::kBFloat16) : at::Tensor());
  ASSERT_TRUE(testing::AllFinite(got.dx) && testing::AllFinite(got.d_weight))
      << "unwritten (NaN-poisoned) or non-finite output";
  EXPECT_EQ(got.dx.scalar_type(), at::kBFloat16);
  EXPECT_EQ(got.d_weight.sizes(), w.sizes());
  const double tol = testing::Tol(at::kBFloat16);
  EXPECT_LT(testing::RelativeError(got.dx, ref_dx), tol) << "d x";
  EXPECT_LT(testing::RelativeError(got.d_weight, ref_dw), tol) << "d weight";
  // dW alone (LoLCATs' fold: the window kernels add dl W^T into dx): the
  // kernel without its dx stores and W^T loads.
  const at::Tensor dw_only = detail::HedgehogWeightGradFromLogitsCuda(OnGpu(x, at::kBFloat16), w_t,
                                                                      OnGpu(dl, at::kBFloat16));
  ASSERT_TRUE(testing::AllFinite(dw_only)) << "d weight alone: non-finite";
  EXPECT_LT(testing::RelativeError(dw_only, ref_dw), tol) << "d weight alone";
}

INSTANTIATE_TEST_SUITE_P(Shapes, HedgehogFromLogitsGpu,
                         ::testing::Values(Case{1, 2, 1, 64, 32}, Case{2, 3, 100, 128, 64},
                                           Case{1, 2, 1000, 64, 64}, Case{2, 3, 300, 64, 32},
                                           Case{2, 8, 2050, 128, 64}, Case{1, 3, 130, 128, 32}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& c = info.param;
                           return "B" + std::to_string(c.b) + "_T" + std::to_string(c.t) + "_D" +
                                  std::to_string(c.d) + "_Fh" + std::to_string(c.fh);
                         });

// Float32 without autocast keeps the exact LibTorch form (no kernel).
TEST(HedgehogGradGpuRouting, Float32WithoutAutocastStaysLibTorch) {
  ASSERT_TRUE(at::hasCUDA()) << "no CUDA device";
  at::manual_seed(5);
  const at::Tensor x = at::randn({1, 2, 50, 64}, at::kDouble);
  const at::Tensor w = at::randn({2, 64, 32}, at::kDouble) / 8;
  const at::Tensor r = at::randn({1, 2, 50, 64}, at::kDouble);
  const testing::LaunchCounter launches;
  const Grads got = TrainMap(x, w, r.to(at::kFloat), at::kFloat, at::kFloat, at::kCUDA);
  EXPECT_EQ(launches.Launches(), 0);
  EXPECT_EQ(got.phi.scalar_type(), at::kFloat);
  const Grads ref = TrainMap(x, w, r, at::kDouble, at::kDouble, at::kCPU);
  EXPECT_LT(testing::RelativeError(got.dw, ref.dw), testing::Tol(at::kFloat));
}

}  // namespace
}  // namespace linearize::kernels
