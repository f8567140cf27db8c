// Dropout of one instruction set. Element i is kept when
// philox_bits(seed, offset, i) >= dropout_threshold(p) (common/philox.h), exactly as
// the reference and the CUDA kernels decide, so masks agree bitwise everywhere.
//
// The Philox4x32-10 blocks are generated many at a time: one SIMD lane per block
// (16 blocks = 64 elements per step with AVX-512, 8 = 32 with AVX2), with the
// 32x32->64-bit products from vpmuludq. Lanes are assigned to blocks so that a
// 4x4 transpose inside each 128-bit lane leaves the random words in element order.
#include <cstring>

#include "common/mathfn.h"
#include "common/philox.h"
#include "cpu/isa/isa.h"

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12 warns about the deliberately undefined registers inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

// dropout_step runs inside an OpenMP region; marking it nothrow spares the region
// exception-handling tables (the compiler cannot tell that intrinsics never throw).
#define FASTMLP_NOTHROW [[gnu::nothrow]]

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
// Elements a thread must get before threads pay off, for the Philox path and for the
// memory-bound loops. Philox costs about 1 ns per element on one AVX2 core, so a
// 20x512 layer (seed-004's) takes 11 µs on one thread and 7.7 µs on two, a 1-2%
// shorter training step, while its second core would otherwise wait.
constexpr index_t kDropoutWork = 1 << 12;
constexpr index_t kCopyWork = 1 << 19;

#if defined(__AVX512F__)
constexpr index_t kStep = 64;  // elements per step: 16 blocks of 4 words

// hi and lo 32 bits of a·m for each 32-bit lane of a.
inline void mulhilo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                        // lanes 0, 2, ...: 64-bit products
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
  hi = _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_CDAB);
  lo = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CDAB);
}

// The 64 random words of elements 4·base .. 4·base + 63 (base = first block, a
// multiple of 16), in element order in w[0..3].
inline void philox_step(__m512i w[4], std::uint64_t base, std::uint64_t offset, std::uint64_t seed) {
  // Lane 4L + k computes block base + 4k + L.
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(base))),
                                _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  __m512i c1 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(base >> 32)));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset >> 32)));
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kMul0)), m1 = _mm512_set1_epi32(static_cast<int>(kMul1));
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo(c0, m0, hi0, lo0);
    mulhilo(c2, m1, hi1, lo1);
    // 0x96 = a ^ b ^ c
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
    c1 = lo1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  // 4x4 transpose in each 128-bit lane: lane L of w[k] becomes block base + 4k + L.
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  w[0] = _mm512_unpacklo_epi64(t0, t2);
  w[1] = _mm512_unpackhi_epi64(t0, t2);
  w[2] = _mm512_unpacklo_epi64(t1, t3);
  w[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Elements [i0, i0 + len), len <= kStep, i0 a multiple of kStep.
FASTMLP_NOTHROW inline void dropout_step(float* y, std::uint8_t* mask, const float* x, index_t i0, index_t len,
                         std::uint32_t threshold, float scale, std::uint64_t seed, std::uint64_t offset) {
  __m512i w[4];
  philox_step(w, static_cast<std::uint64_t>(i0) >> 2, offset, seed);
  const __m512i thr = _mm512_set1_epi32(static_cast<int>(threshold));
  const __m512 s = _mm512_set1_ps(scale);
  std::uint64_t bits = 0;
  for (int q = 0; q < 4; ++q) {
    const index_t left = len - 16 * q;
    const __mmask16 valid = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                       : static_cast<__mmask16>(left > 0 ? (1u << left) - 1u : 0u);
    const __mmask16 keep = _mm512_cmpge_epu32_mask(w[q], thr);
    const __m512 xv = _mm512_maskz_loadu_ps(valid, x + i0 + 16 * q);
    _mm512_mask_storeu_ps(y + i0 + 16 * q, valid, _mm512_maskz_mul_ps(keep, xv, s));
    bits |= static_cast<std::uint64_t>(keep) << (16 * q);
  }
  if (mask) {
    const __m512i bytes = _mm512_maskz_set1_epi8(static_cast<__mmask64>(bits), 1);
    if (len == kStep) _mm512_storeu_si512(mask + i0, bytes);
    else _mm512_mask_storeu_epi8(mask + i0, static_cast<__mmask64>((1ull << len) - 1ull), bytes);
  }
}

#elif defined(__AVX2__)
constexpr index_t kStep = 32;  // elements per step: 8 blocks of 4 words

inline void mulhilo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xB1), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xB1), 0xAA);
}

// The random words of NS consecutive steps: step j gets the 32 words of elements
// 4·(base + 8j) .. 4·(base + 8j) + 31 (base a multiple of 8), in element order in
// w[j][0..3]. The rounds of one step form a chain of multiplies and shuffles whose
// latency one step alone cannot hide; two steps interleaved keep the units busy
// (0.85-0.92x the time of one at a time on a Zen 3 core, 20 to 128 rows of 512).
template <int NS>
inline void philox_steps(__m256i (*w)[4], std::uint64_t base, std::uint64_t offset, std::uint64_t seed) {
  // Lane 4L + k computes block base + 8j + 2k + L.
  __m256i c0[NS], c1[NS], c2[NS], c3[NS];
  const __m256i lanes = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
#pragma GCC unroll 2
  for (int j = 0; j < NS; ++j) {
    const std::uint64_t b = base + 8 * static_cast<std::uint64_t>(j);
    c0[j] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b))), lanes);
    c1[j] = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b >> 32)));
    c2[j] = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset)));
    c3[j] = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset >> 32)));
  }
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kMul0)), m1 = _mm256_set1_epi32(static_cast<int>(kMul1));
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0)), key1 = _mm256_set1_epi32(static_cast<int>(k1));
#pragma GCC unroll 2
    for (int j = 0; j < NS; ++j) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo(c0[j], m0, hi0, lo0);
      mulhilo(c2[j], m1, hi1, lo1);
      c0[j] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[j]), key0);
      c2[j] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[j]), key1);
      c1[j] = lo1;
      c3[j] = lo0;
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
#pragma GCC unroll 2
  for (int j = 0; j < NS; ++j) {
    const __m256i t0 = _mm256_unpacklo_epi32(c0[j], c1[j]), t1 = _mm256_unpackhi_epi32(c0[j], c1[j]);
    const __m256i t2 = _mm256_unpacklo_epi32(c2[j], c3[j]), t3 = _mm256_unpackhi_epi32(c2[j], c3[j]);
    w[j][0] = _mm256_unpacklo_epi64(t0, t2);
    w[j][1] = _mm256_unpackhi_epi64(t0, t2);
    w[j][2] = _mm256_unpacklo_epi64(t1, t3);
    w[j][3] = _mm256_unpackhi_epi64(t1, t3);
  }
}

// Elements [i0, i0 + len) from their random words w (the step's), len <= kStep.
FASTMLP_NOTHROW inline void apply_step(const __m256i w[4], float* y, std::uint8_t* mask, const float* x,
                                       index_t i0, index_t len, std::uint32_t threshold, float scale) {
  const __m256i thr = _mm256_set1_epi32(static_cast<int>(threshold));
  const __m256 s = _mm256_set1_ps(scale);
  if (len == kStep) {
    for (int q = 0; q < 4; ++q) {
      // bits >= threshold (unsigned) <=> max(bits, threshold) == bits
      const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(w[q], thr), w[q]);
      const __m256 xs = _mm256_mul_ps(_mm256_loadu_ps(x + i0 + 8 * q), s);
      _mm256_storeu_ps(y + i0 + 8 * q, _mm256_and_ps(xs, _mm256_castsi256_ps(keep)));
      if (mask) {
        // 8 lanes of 0 / -1 to 8 bytes of 0 / 1
        const __m128i k16 = _mm_packs_epi32(_mm256_castsi256_si128(keep), _mm256_extracti128_si256(keep, 1));
        const __m128i k8 = _mm_packs_epi16(k16, k16);
        const __m128i ones = _mm_and_si128(k8, _mm_set1_epi8(1));
        const std::uint64_t b = static_cast<std::uint64_t>(_mm_cvtsi128_si64(ones));
        std::memcpy(mask + i0 + 8 * q, &b, 8);
      }
    }
    return;
  }
  alignas(32) std::uint32_t words[kStep];
  for (int q = 0; q < 4; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(words + 8 * q), w[q]);
  for (index_t j = 0; j < len; ++j) {
    const bool keep = words[j] >= threshold;
    if (mask) mask[i0 + j] = keep ? 1 : 0;
    y[i0 + j] = keep ? x[i0 + j] * scale : 0.0f;
  }
}

FASTMLP_NOTHROW inline void dropout_step(float* y, std::uint8_t* mask, const float* x, index_t i0, index_t len,
                         std::uint32_t threshold, float scale, std::uint64_t seed, std::uint64_t offset) {
  __m256i w[1][4];
  philox_steps<1>(w, static_cast<std::uint64_t>(i0) >> 2, offset, seed);
  apply_step(w[0], y, mask, x, i0, len, threshold, scale);
}

// Two whole steps from element i0 (a multiple of kStep).
#define FASTMLP_DROPOUT_PAIRS 1
FASTMLP_NOTHROW inline void dropout_step_pair(float* y, std::uint8_t* mask, const float* x, index_t i0,
                                              std::uint32_t threshold, float scale, std::uint64_t seed,
                                              std::uint64_t offset) {
  __m256i w[2][4];
  philox_steps<2>(w, static_cast<std::uint64_t>(i0) >> 2, offset, seed);
  apply_step(w[0], y, mask, x, i0, kStep, threshold, scale);
  apply_step(w[1], y, mask, x, i0 + kStep, kStep, threshold, scale);
}

#else
constexpr index_t kStep = 32;  // elements per step: 8 blocks of 4 words

// Portable: the 8 blocks of one step side by side, a loop compilers can vectorize.
FASTMLP_NOTHROW inline void dropout_step(float* y, std::uint8_t* mask, const float* x, index_t i0, index_t len,
                         std::uint32_t threshold, float scale, std::uint64_t seed, std::uint64_t offset) {
  constexpr int kBlocks = static_cast<int>(kStep / 4);
  const std::uint64_t base = static_cast<std::uint64_t>(i0) >> 2;
  std::uint32_t c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
  for (int b = 0; b < kBlocks; ++b) {
    const std::uint64_t block = base + static_cast<std::uint64_t>(b);
    c0[b] = static_cast<std::uint32_t>(block);
    c1[b] = static_cast<std::uint32_t>(block >> 32);
    c2[b] = static_cast<std::uint32_t>(offset);
    c3[b] = static_cast<std::uint32_t>(offset >> 32);
  }
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int b = 0; b < kBlocks; ++b) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0[b];
      const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c2[b];
      c0[b] = static_cast<std::uint32_t>(p1 >> 32) ^ c1[b] ^ k0;
      c1[b] = static_cast<std::uint32_t>(p1);
      c2[b] = static_cast<std::uint32_t>(p0 >> 32) ^ c3[b] ^ k1;
      c3[b] = static_cast<std::uint32_t>(p0);
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  for (index_t j = 0; j < len; ++j) {
    const int b = static_cast<int>(j >> 2), word = static_cast<int>(j & 3);
    const std::uint32_t bits = word == 0 ? c0[b] : word == 1 ? c1[b] : word == 2 ? c2[b] : c3[b];
    const bool keep = bits >= threshold;
    if (mask) mask[i0 + j] = keep ? 1 : 0;
    y[i0 + j] = keep ? x[i0 + j] * scale : 0.0f;
  }
}
#endif

// Steps [s0, s1) of the n elements (each element's bits depend on its index alone, so
// any split of the steps gives the same result).
FASTMLP_NOTHROW inline void dropout_steps(float* y, std::uint8_t* mask, const float* x, index_t n, index_t s0,
                                          index_t s1, std::uint32_t threshold, float scale, std::uint64_t seed,
                                          std::uint64_t offset) {
  index_t s = s0;
#if defined(FASTMLP_DROPOUT_PAIRS)
  for (; s + 2 <= s1 && (s + 2) * kStep <= n; s += 2)
    dropout_step_pair(y, mask, x, s * kStep, threshold, scale, seed, offset);
#endif
  for (; s < s1; ++s) {
    const index_t i0 = s * kStep;
    dropout_step(y, mask, x, i0, i0 + kStep <= n ? kStep : n - i0, threshold, scale, seed, offset);
  }
}

// y[i] = x[i]·1/(1-p) where philox_bits(seed, offset, i) >= threshold(p), else 0;
// mask[i] = 1 where kept (when mask is not null).
void dropout_forward_kernel(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                            std::uint64_t seed, std::uint64_t offset) {
  if (n <= 0) return;
  if (!(p < 1.0f)) {  // nothing is kept
    std::memset(y, 0, sizeof(float) * static_cast<std::size_t>(n));
    if (mask) std::memset(mask, 0, static_cast<std::size_t>(n));
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  const std::uint32_t threshold = dropout_threshold(p);
  if (threshold == 0) {  // everything is kept: no random bits needed
#pragma omp parallel for simd schedule(static) num_threads(threads_for(n, kCopyWork))
    for (index_t i = 0; i < n; ++i) y[i] = x[i] * scale;
    if (mask) std::memset(mask, 1, static_cast<std::size_t>(n));
    return;
  }
  const index_t steps = (n + kStep - 1) / kStep;
  const int nt = threads_for(n, kDropoutWork);
  if (nt <= 1) {  // no region for one thread (see dropout_backward_kernel)
    dropout_steps(y, mask, x, n, 0, steps, threshold, scale, seed, offset);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), count = omp_get_num_threads();
    dropout_steps(y, mask, x, n, t * steps / count, (t + 1) * steps / count, threshold, scale, seed, offset);
  }
}

// dx (+)= dy·mask/(1-p)
void dropout_backward_kernel(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p,
                             bool accumulate) {
  if (n <= 0) return;
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const int nt = threads_for(n, kCopyWork);
  // One thread runs the loops without opening a parallel region: a region of one
  // thread still costs about half a microsecond, more than 10k elements take here.
  if (accumulate) {
    // dy·scale is rounded before it is added, as in the reference: passing the product
    // through its bits (a select by bit mask) keeps the compiler from fusing it into an FMA.
    if (nt <= 1) {
#pragma omp simd
      for (index_t i = 0; i < n; ++i) {
        const std::int32_t keep = -static_cast<std::int32_t>(mask[i] != 0);
        dx[i] += fm_bits_to_float(fm_float_to_bits(dy[i] * scale) & keep);
      }
      return;
    }
#pragma omp parallel for simd schedule(static) num_threads(nt)
    for (index_t i = 0; i < n; ++i) {
      const std::int32_t keep = -static_cast<std::int32_t>(mask[i] != 0);
      dx[i] += fm_bits_to_float(fm_float_to_bits(dy[i] * scale) & keep);
    }
  } else {
    if (nt <= 1) {
#pragma omp simd
      for (index_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
      return;
    }
#pragma omp parallel for simd schedule(static) num_threads(nt)
    for (index_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
  }
}

}  // namespace

void fill_dropout(KernelTable& t) {
  t.dropout_forward = dropout_forward_kernel;
  t.dropout_backward = dropout_backward_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
