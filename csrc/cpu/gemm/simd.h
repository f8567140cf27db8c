// Vector helpers for the GEMM kernels of one instruction set. A `vf` holds kW
// float lanes: __m512 (AVX-512), __m256 (AVX2+FMA) or a 4-lane GCC/Clang vector
// type that every target lowers to its own SIMD (SSE2 on x86-64) for the generic
// copy. Loads and stores with a lane count handle the edges of a tile; masked-off
// lanes are never touched in memory. Everything here has internal linkage.
#pragma once

#include <cstdint>

#include "cpu/isa/isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

#if defined(__AVX512F__)

constexpr int kW = 16;
using vf = __m512;

inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset1(float x) { return _mm512_set1_ps(x); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf x) { _mm512_storeu_ps(p, x); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c
// x > 0 ? x : 0 (NaN gives 0, as act_forward does). The zero-masking forms used
// with a full mask are the plain instructions, minus a false GCC 12 warning.
// max(0, x): MAXPS returns its second operand when either is NaN, so NaN (and -0) pass as x.
inline vf vrelu(vf x) { return _mm512_maskz_max_ps(0xFFFF, _mm512_setzero_ps(), x); }
// x > 0 ? x : a·x
inline vf vleaky(vf x, vf a) {
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(pos, _mm512_mul_ps(x, a), x);
}
inline __mmask16 lanes(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
// The first n lanes (0 <= n <= kW) from p, zeros above.
inline vf vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
inline void vstore_n(float* p, vf x, int n) { _mm512_mask_storeu_ps(p, lanes(n), x); }

#elif defined(__AVX2__)

constexpr int kW = 8;
using vf = __m256;

inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset1(float x) { return _mm256_set1_ps(x); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf x) { _mm256_storeu_ps(p, x); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vrelu(vf x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }  // NaN and -0 pass as x
inline vf vleaky(vf x, vf a) {
  const vf pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(_mm256_mul_ps(x, a), x, pos);
}
inline __m256i lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline vf vload_n(const float* p, int n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes(n));
}
inline void vstore_n(float* p, vf x, int n) {
  if (n >= 8)
    _mm256_storeu_ps(p, x);
  else
    _mm256_maskstore_ps(p, lanes(n), x);
}

#else

constexpr int kW = 4;
typedef float vf __attribute__((vector_size(16)));

inline vf vzero() { return vf{0.0f, 0.0f, 0.0f, 0.0f}; }
inline vf vset1(float x) { return vf{x, x, x, x}; }
inline vf vload(const float* p) {
  vf r;
  __builtin_memcpy(&r, p, sizeof r);
  return r;
}
inline void vstore(float* p, vf x) { __builtin_memcpy(p, &x, sizeof x); }
inline vf vadd(vf a, vf b) { return a + b; }
inline vf vsub(vf a, vf b) { return a - b; }
inline vf vmul(vf a, vf b) { return a * b; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vrelu(vf x) {
  const vf zero = vzero();
  return x < zero ? zero : x;
}
inline vf vleaky(vf x, vf a) {
  const vf zero = vzero();
  return x > zero ? x : x * a;
}
inline vf vload_n(const float* p, int n) {
  if (n >= kW) return vload(p);
  vf r = vzero();
  for (int l = 0; l < n; ++l) r[l] = p[l];
  return r;
}
inline void vstore_n(float* p, vf x, int n) {
  if (n >= kW) {
    vstore(p, x);
    return;
  }
  for (int l = 0; l < n; ++l) p[l] = x[l];
}

#endif

// Each lane rounded to the nearest bfloat16, ties to even, kept as a float32 (the
// vector form of common/bf16.h's bf16_round_bits: NaN made quiet, never infinite).
inline vf vround_bf16(vf x) {
  typedef std::uint32_t vu __attribute__((vector_size(sizeof(vf))));
  typedef std::int32_t vi __attribute__((vector_size(sizeof(vf))));
  vu u;
  __builtin_memcpy(&u, &x, sizeof u);
  const vu nan = (vu)((vi)(u & 0x7FFFFFFFu) > 0x7F800000);  // (no sign bit left: a signed compare)
  const vu r = u + 0x7FFFu + ((u >> 16) & 1u);
  const vu q = ((nan & (u | 0x00400000u)) | (~nan & r)) & 0xFFFF0000u;
  vf y;
  __builtin_memcpy(&y, &q, sizeof y);
  return y;
}

// Ask for x in a register: stops the compiler from folding one load into several
// arithmetic instructions as memory operands (each of which loads again).
inline void in_register(vf& x) {
#if defined(__AVX2__)
  __asm__("" : "+v"(x));
#else
  (void)x;
#endif
}

}  // namespace
}  // namespace fastmlp::cpu::FASTMLP_ISA
