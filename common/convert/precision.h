// Where and in what precision a conversion trains: the device named by the
// options ("cpu", "cuda", "cuda:N"), checked against what this process can
// use, and a scope that turns bf16 autocast on for one forward/backward.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

#include "absl/status/statusor.h"

namespace linearize::convert {

// INVALID_ARGUMENT for a name LibTorch does not parse or a device type other
// than cpu/cuda; FAILED_PRECONDITION when the device does not exist here
// (the message says how many CUDA devices there are).
absl::StatusOr<c10::Device> ParseTrainingDevice(const std::string& name);

// While alive (when `enabled`): autocast to bfloat16 on `device`'s type, so
// matrix products run in bf16 while float32 tensors (trainable parameters,
// optimizer state) stay float32. The destructor restores the previous state
// and drops autocast's cast cache (cached bf16 copies of parameters would be
// stale after the next optimizer step). Thread-local, like autocast itself.
class AutocastScope {
 public:
  AutocastScope(c10::Device device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

}  // namespace linearize::convert
