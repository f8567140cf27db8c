// Packing of GEMM operands into the panel layouts the micro-kernels read: the
// rows of a panel become contiguous for each k. Row-major operands whose rows run
// along K (A, or Bᵀ) are transposed in registers, kW×kW blocks at a time. For the
// bfloat16 GEMM each value is rounded to bfloat16 on its way into the panel.
#include "cpu/gemm/gemm.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

#if defined(__AVX512F__)

// In place: r[l] lane i <- r[i] lane l.
inline void transpose_block(__m512 (&r)[16]) {
  // (Zero-masking with a full mask: the plain instruction, without GCC 12's false
  // -Wuninitialized on the undefined pass-through operand.)
  constexpr __mmask16 kAll = 0xFFFF;
  __m512 a[16], b[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {  // pairs of rows, interleaved within 128-bit blocks
    a[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    a[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {  // b[g+c], 128-bit block t: rows g..g+3 of column 4t+c
    b[g + 0] = _mm512_shuffle_ps(a[g + 0], a[g + 2], 0x44);
    b[g + 1] = _mm512_shuffle_ps(a[g + 0], a[g + 2], 0xEE);
    b[g + 2] = _mm512_shuffle_ps(a[g + 1], a[g + 3], 0x44);
    b[g + 3] = _mm512_shuffle_ps(a[g + 1], a[g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {  // 4x4 transpose of the 128-bit blocks
    const __m512 x0 = _mm512_maskz_shuffle_f32x4(kAll, b[c], b[4 + c], 0x44);
    const __m512 x1 = _mm512_maskz_shuffle_f32x4(kAll, b[c], b[4 + c], 0xEE);
    const __m512 x2 = _mm512_maskz_shuffle_f32x4(kAll, b[8 + c], b[12 + c], 0x44);
    const __m512 x3 = _mm512_maskz_shuffle_f32x4(kAll, b[8 + c], b[12 + c], 0xEE);
    r[c] = _mm512_maskz_shuffle_f32x4(kAll, x0, x2, 0x88);
    r[4 + c] = _mm512_maskz_shuffle_f32x4(kAll, x0, x2, 0xDD);
    r[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, x1, x3, 0x88);
    r[12 + c] = _mm512_maskz_shuffle_f32x4(kAll, x1, x3, 0xDD);
  }
}

#elif defined(__AVX2__)

inline void transpose_block(__m256 (&r)[8]) {
  __m256 a[8], b[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int g = 0; g < 8; g += 4) {
    b[g + 0] = _mm256_shuffle_ps(a[g + 0], a[g + 2], 0x44);
    b[g + 1] = _mm256_shuffle_ps(a[g + 0], a[g + 2], 0xEE);
    b[g + 2] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0x44);
    b[g + 3] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x31);
  }
}

#endif

// A vector, or (Bf16) each lane rounded to bfloat16 (the bfloat16 GEMM rounds its
// operands as it packs them).
template <bool Bf16>
inline vf maybe_round(vf x) {
  if constexpr (Bf16)
    return vround_bf16(x);
  else
    return x;
}

template <bool Bf16>
void pack_transpose_t(float* dst, index_t ldd, const float* src, index_t lds, index_t rows,
                      index_t cols) {
#if defined(__AVX2__)
  for (index_t i0 = 0; i0 < ldd; i0 += kW) {
    const int ni = static_cast<int>(ldd - i0 < kW ? ldd - i0 : kW);  // lanes stored
    const index_t left = rows - i0;
    const int nr = static_cast<int>(left <= 0 ? 0 : left < kW ? left : kW);  // rows read
    for (index_t k0 = 0; k0 < cols; k0 += kW) {
      const int nk = static_cast<int>(cols - k0 < kW ? cols - k0 : kW);
      vf r[kW];
      const float* s = src + i0 * lds + k0;
#pragma GCC unroll 16
      for (int l = 0; l < kW; ++l) {
        if (l < nr)
          r[l] = maybe_round<Bf16>(nk == kW ? vload(s + l * lds) : vload_n(s + l * lds, nk));
        else
          r[l] = vzero();
      }
      transpose_block(r);
      float* d = dst + k0 * ldd + i0;
      if (ni == kW || ldd < kW) {  // narrow panel: full stores, each overlapping the next
#pragma GCC unroll 16
        for (int l = 0; l < kW; ++l)
          if (l < nk) vstore(d + l * ldd, r[l]);
      } else {
#pragma GCC unroll 16
        for (int l = 0; l < kW; ++l)
          if (l < nk) vstore_n(d + l * ldd, r[l], ni);
      }
    }
  }
#else
  for (index_t k = 0; k < cols; ++k) {
    float* d = dst + k * ldd;
    for (index_t i = 0; i < rows; ++i) d[i] = Bf16 ? round_to_bf16(src[i * lds + k]) : src[i * lds + k];
    for (index_t i = rows; i < ldd; ++i) d[i] = 0.0f;
  }
#endif
}

template <bool Bf16>
void pack_copy_t(float* dst, index_t ldd, const float* src, index_t lds, index_t width,
                 index_t rows_k) {
  if (width == kNR && ldd == kNR) {  // a whole B micro-panel: straight vector copies
    for (index_t k = 0; k < rows_k; ++k) {
      const float* s = src + k * lds;
      float* d = dst + k * kNR;
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) vstore(d + j * kW, maybe_round<Bf16>(vload(s + j * kW)));
    }
    return;
  }
  if (ldd < kW) {  // a narrow A panel: one overlapping full store per row
    // A full load may read past the row's `width` floats (they land in lanes the
    // next store overwrites) wherever the next source row proves the memory is there.
    const bool over_read = width == ldd && lds >= kW;
    for (index_t k = 0; k < rows_k; ++k) {
      const float* s = src + k * lds;
      const vf v = over_read && k + 1 < rows_k ? vload(s) : vload_n(s, static_cast<int>(width));
      vstore(dst + k * ldd, maybe_round<Bf16>(v));
    }
    return;
  }
  for (index_t k = 0; k < rows_k; ++k) {
    const float* s = src + k * lds;
    float* d = dst + k * ldd;
    for (index_t j0 = 0; j0 < ldd; j0 += kW) {
      const index_t left = width - j0;
      const int n = static_cast<int>(left <= 0 ? 0 : left < kW ? left : kW);
      const vf v = maybe_round<Bf16>(n == kW ? vload(s + j0) : n > 0 ? vload_n(s + j0, n) : vzero());
      if (ldd - j0 >= kW)
        vstore(d + j0, v);
      else
        vstore_n(d + j0, v, static_cast<int>(ldd - j0));
    }
  }
}

}  // namespace

void pack_transpose(float* dst, index_t ldd, const float* src, index_t lds, index_t rows, index_t cols,
                    bool bf16) {
  if (bf16)
    pack_transpose_t<true>(dst, ldd, src, lds, rows, cols);
  else
    pack_transpose_t<false>(dst, ldd, src, lds, rows, cols);
}

void pack_copy(float* dst, index_t ldd, const float* src, index_t lds, index_t width, index_t rows_k,
               bool bf16) {
  if (bf16)
    pack_copy_t<true>(dst, ldd, src, lds, width, rows_k);
  else
    pack_copy_t<false>(dst, ldd, src, lds, width, rows_k);
}

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
