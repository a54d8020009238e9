#include "common/convert/precision.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

#include "absl/strings/str_cat.h"

namespace linearize::convert {

absl::StatusOr<c10::Device> ParseTrainingDevice(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", name, "\": expected cpu, cuda or cuda:N"));
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", name, "\": only cpu and cuda can train"));
  }
  const size_t count = at::hasCUDA() ? at::getNumGPUs() : 0;
  const int64_t index = device.has_index() ? device.index() : 0;
  if (index >= static_cast<int64_t>(count)) {
    return absl::FailedPreconditionError(
        absl::StrCat("device \"", name, "\": this machine has ", count, " CUDA device",
                     count == 1 ? "" : "s", at::hasCUDA() ? "" : " (no CUDA runtime loaded)"));
  }
  return device;
}

AutocastScope::AutocastScope(c10::Device device, bool enabled)
    : type_(device.type()), enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(type_);
  was_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  at::autocast::set_autocast_enabled(type_, true);
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  at::autocast::set_autocast_enabled(type_, was_enabled_);
  at::autocast::set_autocast_dtype(type_, was_dtype_);
  at::autocast::clear_cache();
}

}  // namespace linearize::convert
