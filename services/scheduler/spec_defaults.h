// Fills every default of a validated ConversionSpec, so that Job.spec (and
// the spec each task receives) shows exactly what runs. Recipe defaults are
// those documented in proto/linearize/v1/conversion.proto.
#pragma once

#include <cstdint>
#include <string>

#include "linearize/v1/conversion.pb.h"

namespace linearize::scheduler {

// `job_id` seeds the derived seeds (reproducible per job).
void FillSpecDefaults(linearize::v1::ConversionSpec* spec, const std::string& job_id);

// A stable 64-bit hash (FNV-1a) for derived seeds.
uint64_t StableHash(const std::string& text);

}  // namespace linearize::scheduler
