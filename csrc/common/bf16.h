// bfloat16 <-> float32, scalar. A bfloat16 is the upper 16 bits of a float32: the same
// sign and 8-bit exponent, 7 stored mantissa bits. Conversion to bfloat16 rounds to
// nearest, ties to even, on the bit pattern (as torch's c10::BFloat16 does):
//   - a NaN stays a NaN of the same sign, made quiet (its top mantissa bit set), so that
//     dropping the low 16 bits cannot turn it into an infinity;
//   - infinities stay infinities; finite values above the largest bfloat16
//     (0x7F7F·2^16 plus half an ulp) round to infinity, as IEEE rounding does;
//   - denormals are rounded like every other value (not flushed to zero);
//   - -0 stays -0.
// Conversion to float32 is exact (the low 16 bits become zero).
#pragma once

#include <cstdint>
#include <cstring>

namespace fastmlp {

inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The float32 bit pattern of x rounded to bfloat16 (its low 16 bits zero).
inline std::uint32_t bf16_round_bits(std::uint32_t u) {
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const std::uint32_t r = nan ? (u | 0x00400000u) : u + 0x7FFFu + ((u >> 16) & 1u);
  return r & 0xFFFF0000u;
}

inline std::uint16_t bf16_from_float(float x) { return static_cast<std::uint16_t>(bf16_round_bits(bits_of(x)) >> 16); }
inline float float_from_bf16(std::uint16_t h) { return float_of(static_cast<std::uint32_t>(h) << 16); }
// x rounded to the nearest bfloat16, as a float32 (exact: every bfloat16 is a float32).
inline float round_to_bf16(float x) { return float_of(bf16_round_bits(bits_of(x))); }

}  // namespace fastmlp
