// DequantizeToF32: ggml's reference dequantization (ggml-quants.c), which the
// gguf Python package reproduces. Each product is rounded to float32 before
// the next operation, in the reference's order, so results are bit-exact
// (the library is built with -ffp-contract=off so no FMA merges them).
#include <bit>
#include <cstring>

#include "absl/status/status.h"
#include "common/io/ggml_type_traits.h"
#include "common/io/gguf.h"
#include "common/io/str_util.h"

namespace linearize::io {
namespace {

inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// IEEE half to float, exact; NaNs come out quiet, as the F16C instruction
// and ggml's software conversion make them.
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float32.
    bits = sign | std::bit_cast<uint32_t>(static_cast<float>(mant) * 0x1p-24f);
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

inline float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }

void DequantF16(const uint8_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = LoadHalf(in + 2 * i);
}

void DequantBF16(const uint8_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(static_cast<uint32_t>(LoadU16(in + 2 * i)) << 16);
}

// Block: d (f16), qs[32] (int8).
void DequantQ8_0(const uint8_t* in, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b, in += 34, out += 32) {
    const float d = LoadHalf(in);
    for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(in[2 + j])) * d;
  }
}

// Block: d (f16), qs[16] (low nibbles are elements 0..15, high 16..31).
void DequantQ4_0(const uint8_t* in, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b, in += 18, out += 32) {
    const float d = LoadHalf(in);
    const uint8_t* qs = in + 2;
    for (int j = 0; j < 16; ++j) {
      out[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
      out[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// Block: d (f16), m (f16), qs[16]; x = q * d + m.
void DequantQ4_1(const uint8_t* in, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b, in += 20, out += 32) {
    const float d = LoadHalf(in);
    const float m = LoadHalf(in + 2);
    const uint8_t* qs = in + 4;
    for (int j = 0; j < 16; ++j) {
      const float lo = static_cast<float>(qs[j] & 0x0f) * d;
      const float hi = static_cast<float>(qs[j] >> 4) * d;
      out[j] = lo + m;
      out[j + 16] = hi + m;
    }
  }
}

// Q4_K's 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Super-block of 256: d, dmin (f16), scales[12], qs[128]; 8 sub-blocks of 32.
void DequantQ4_K(const uint8_t* in, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b, in += 144) {
    const float d = LoadHalf(in);
    const float dmin = LoadHalf(in + 2);
    const uint8_t* scales = in + 4;
    const uint8_t* q = in + 16;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t sc, m;
      ScaleMinK4(j, scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      ScaleMinK4(j + 1, scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const float p = d1 * static_cast<float>(q[l] & 0x0f);
        *out++ = p - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const float p = d2 * static_cast<float>(q[l] >> 4);
        *out++ = p - m2;
      }
    }
  }
}

// Super-block of 256: ql[128], qh[64], scales[16] (int8), d (f16).
void DequantQ6_K(const uint8_t* in, int64_t blocks, float* out) {
  for (int64_t b = 0; b < blocks; ++b, in += 210) {
    const float d = LoadHalf(in + 208);
    const uint8_t* ql = in;
    const uint8_t* qh = in + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(in + 192);
    for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, out += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = (d * static_cast<float>(sc[is])) * static_cast<float>(q1);
        out[l + 32] = (d * static_cast<float>(sc[is + 2])) * static_cast<float>(q2);
        out[l + 64] = (d * static_cast<float>(sc[is + 4])) * static_cast<float>(q3);
        out[l + 96] = (d * static_cast<float>(sc[is + 6])) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

absl::Status DequantizeToF32(const GgufTensor& tensor, std::span<float> out) {
  auto fail = [&](std::string_view what) {
    return absl::InvalidArgumentError(internal::StrCat("tensor \"", tensor.name, "\" (",
                                                   GgmlTypeName(tensor.type), "): ", what));
  };
  std::optional<internal::GgmlTypeTraits> traits =
      internal::FindGgmlTypeTraits(static_cast<uint32_t>(tensor.type));
  if (!traits || !IsSupportedGgmlType(tensor.type)) {
    return fail("type cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
                "Q4_K, Q6_K)");
  }
  uint64_t numel = 1;
  for (int64_t d : tensor.dims) {
    if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
      return fail("invalid shape");
    }
  }
  if (numel % static_cast<uint64_t>(traits->block_size) != 0) {
    return fail(internal::StrCat(numel, " elements are not a whole number of blocks of ",
                             traits->block_size));
  }
  const uint64_t blocks = numel / static_cast<uint64_t>(traits->block_size);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(traits->type_size), &nbytes) ||
      nbytes != tensor.data.size()) {
    return fail(internal::StrCat("holds ", tensor.data.size(), " bytes, its shape needs ",
                             blocks, " blocks of ", traits->type_size));
  }
  if (out.size() != numel) {
    return fail(internal::StrCat("output has ", out.size(), " floats, the tensor ", numel));
  }
  const auto* in = reinterpret_cast<const uint8_t*>(tensor.data.data());
  const auto n = static_cast<int64_t>(blocks);
  switch (tensor.type) {
    case GgmlType::kF32: if (n > 0) std::memcpy(out.data(), in, nbytes); break;
    case GgmlType::kF16: DequantF16(in, n, out.data()); break;
    case GgmlType::kBF16: DequantBF16(in, n, out.data()); break;
    case GgmlType::kQ8_0: DequantQ8_0(in, n, out.data()); break;
    case GgmlType::kQ4_0: DequantQ4_0(in, n, out.data()); break;
    case GgmlType::kQ4_1: DequantQ4_1(in, n, out.data()); break;
    case GgmlType::kQ4_K: DequantQ4_K(in, n, out.data()); break;
    case GgmlType::kQ6_K: DequantQ6_K(in, n, out.data()); break;
    default: return fail("type cannot be dequantized");
  }
  return absl::OkStatus();
}

}  // namespace linearize::io
