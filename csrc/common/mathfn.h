// Branch-free float32 elementary functions that compilers vectorize inside
// `#pragma omp simd` loops (no calls into libm), shared by CPU and CUDA code.
// Accuracy (checked against float64 in tests/kernels/test_activation.py and
// test_loss.py):
// fm_exp, fm_log, fm_sigmoid, fm_tanh within a few ulp; fm_erfc within 3e-7 relative
// for |z| < 3, degrading to 1e-5 in the far tail where x² rounds.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace fastmlp {

FASTMLP_HD float fm_bits_to_float(std::int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

// 2^(e - 127) as a float from its biased exponent e: the shift is done unsigned, so an
// out-of-range e (a NaN input's, whose result is discarded) is not undefined behaviour.
FASTMLP_HD float fm_exp2_biased(std::int32_t e) {
  return fm_bits_to_float(static_cast<std::int32_t>(static_cast<std::uint32_t>(e) << 23));
}

FASTMLP_HD std::int32_t fm_float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
#endif
}

FASTMLP_HD float fm_select(bool c, float a, float b) { return c ? a : b; }

// exp(x) = 2^k · e^r with k = round(x / ln 2) and |r| <= ln2 / 2; e^r from a
// degree-7 Taylor polynomial (truncation error below 1e-9 on that interval).
FASTMLP_HD float fm_exp(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693145751953125f;     // ln 2 split in two so that
  const float kLn2Lo = 1.428606765330187e-06f;  // k·ln2 subtracts exactly
  const float kRound = 12582912.0f;             // 1.5·2^23: adding it rounds to an integer
  float xc = x < -87.5f ? -87.5f : x;
  xc = xc > 88.5f ? 88.5f : xc;
  float kf = (xc * kLog2e + kRound) - kRound;
  float r = (xc - kf * kLn2Hi) - kf * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^k with k in [-126, 128]: split off one power of two so that both factors
  // are normal floats (2^128 itself is not representable).
  std::int32_t k = static_cast<std::int32_t>(kf);
  std::int32_t kh = k >> 7;  // -1, 0 or 1
  float y = p * fm_exp2_biased(kh + 127) * fm_exp2_biased(k - kh + 127);
  y = fm_select(x > 88.72283f, __builtin_huge_valf(), y);
  y = fm_select(x < -87.33654f, 0.0f, y);
  return fm_select(x != x, x, y);
}

// log(x) = e·ln2 + log m for x = 2^e·m with m in [√½, √2); with f = m - 1 and
// s = f/(2+f) (|s| <= 0.1716), log m = 2·atanh s = 2s + 2s³/3 + 2s⁵/5 + ..., summed
// to s⁹ (the first omitted term is below 1e-9 of the result). Subnormal inputs
// are scaled by 2^23 first; log 0 = -inf, log of a negative number is NaN.
FASTMLP_HD float fm_log(float x) {
  const float kLn2Hi = 0.693145751953125f;
  const float kLn2Lo = 1.428606765330187e-06f;
  const bool tiny = x < 1.17549435e-38f;
  const std::int32_t bits = fm_float_to_bits(fm_select(tiny, x * 8388608.0f, x));
  std::int32_t e = ((bits >> 23) & 0xFF) - 127 - (tiny ? 23 : 0);
  float m = fm_bits_to_float((bits & 0x007FFFFF) | 0x3F800000);  // [1, 2)
  const bool high = m > 1.41421356f;
  m = fm_select(high, 0.5f * m, m);
  e += high ? 1 : 0;
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float s2 = s * s;
  float p = 2.0f / 9.0f;
  p = p * s2 + 2.0f / 7.0f;
  p = p * s2 + 2.0f / 5.0f;
  p = p * s2 + 2.0f / 3.0f;
  const float ef = static_cast<float>(e);
  float r = ef * kLn2Hi + (s * (2.0f + s2 * p) + ef * kLn2Lo);
  r = fm_select(x == __builtin_huge_valf(), x, r);
  r = fm_select(x == 0.0f, -__builtin_huge_valf(), r);
  r = fm_select(x < 0.0f, fm_bits_to_float(0x7FC00000), r);  // NaN
  return fm_select(x != x, x, r);
}

// log(1 + x) without losing x when it is small: with w = 1 + x rounded,
// log1p x = log w · x / (w - 1), which cancels the rounding of w (Goldberg's method).
FASTMLP_HD float fm_log1p(float x) {
  const float w = 1.0f + x;
  const float d = w - 1.0f;
  float r = fm_log(w) * (x / fm_select(d == 0.0f, 1.0f, d));
  r = fm_select(d == 0.0f, x, r);
  return fm_select(w == __builtin_huge_valf(), w, r);
}

FASTMLP_HD float fm_sigmoid(float x) { return 1.0f / (1.0f + fm_exp(-x)); }

// tanh|x| = -m / (2 + m) with m = e^(-2|x|) - 1 computed without cancellation:
// -2|x| = k·ln2 + r (|r| <= ln2/2), e^r - 1 = r + r²·(1/2 + r/6 + ... + r⁵/5040)
// (truncation below 2e-8 relative), m = 2^k·(e^r - 1) + (2^k - 1). No branch for
// small |x|, one division; |x| is clamped at 10 (tanh 10 rounds to 1), and the
// sign of x (-0 and NaN included) is copied onto the result.
FASTMLP_HD float fm_tanh(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693145751953125f;
  const float kLn2Lo = 1.428606765330187e-06f;
  const float kRound = 12582912.0f;  // 1.5·2^23
  const float a = x < 0.0f ? -x : x;
  float y = -2.0f * a;
  y = fm_select(y < -20.0f, -20.0f, y);  // NaN stays NaN
  const float kf = (y * kLog2e + kRound) - kRound;
  const float r = (y - kf * kLn2Hi) - kf * kLn2Lo;
  float q = 1.0f / 5040.0f;
  q = q * r + 1.0f / 720.0f;
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  const float em1_r = r + (r * r) * q;                                               // e^r - 1
  const float two_k = fm_exp2_biased(static_cast<std::int32_t>(kf) + 127);  // k in [-29, 0]
  const float m = em1_r * two_k + (two_k - 1.0f);
  const float t = (0.0f - m) / (2.0f + m);  // >= +0
  return fm_bits_to_float(fm_float_to_bits(t) | (fm_float_to_bits(x) & static_cast<std::int32_t>(0x80000000u)));
}

// erfc(z) for any z, using the Chebyshev-fitted form erfc(|z|) ≈ t·exp(-z² + P(t)),
// t = 1/(1 + |z|/2), whose published fractional error is below 1.2e-7
// (Press et al., Numerical Recipes, 2nd ed., §6.2); erfc(-z) = 2 - erfc(z).
FASTMLP_HD float fm_erfc(float z) {
  float a = z < 0.0f ? -z : z;
  float t = 1.0f / (1.0f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float r = t * fm_exp(p - a * a);
  return fm_select(z < 0.0f, 2.0f - r, r);
}

}  // namespace fastmlp
