// The X·Wᵀ path for small batches (a Linear layer's forward pass): rows of A and
// rows of B both run along K, so a tile of kDotM rows of A by kDotN rows of B is
// computed as dot products, vectorized along K, with no packing at all; each
// accumulator is summed across its lanes once at the end of K.
#include "cpu/gemm/epilogue.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

using DotFn = void (*)(index_t K, const float* a, index_t lda, const float* b,
                       index_t ldb, float* c, index_t ldc, float* z, index_t ldz,
                       const float* bias, const TileEpilogue& e);

// out[i] lane j (j < ND) = Σ lanes of acc[i·ND + j], for i < MD.
template <int MD, int ND>
inline void reduce_tile(const vf* acc, vf* out) {
#if defined(__AVX512F__)
  constexpr int kCount = MD * ND;
  // (The zero-masking forms with a full mask compile to the plain instructions and
  // keep GCC 12 from warning about the undefined pass-through operand.)
  constexpr __mmask16 kAll = 0xFFFF;
  static_assert(kCount <= 16, "one reduction tree sums 16 vectors");
  // A tree of shuffles and adds sums 16 vectors into one, whose lane 4t+u then
  // holds input slot 4u+t; so slot s is fed acc[4·(s%4) + s/4], and lane r ends
  // up with the sum of acc[r].
  __m512 s[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    const int src = 4 * (i % 4) + i / 4;
    s[i] = src < kCount ? acc[src] : _mm512_setzero_ps();
  }
  __m512 u[8], w[4], x[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)  // 256-bit halves
    u[i] = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(kAll, s[2 * i], s[2 * i + 1], 0x44),
                         _mm512_maskz_shuffle_f32x4(kAll, s[2 * i], s[2 * i + 1], 0xEE));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)  // 128-bit blocks
    w[i] = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(kAll, u[2 * i], u[2 * i + 1], 0x88),
                         _mm512_maskz_shuffle_f32x4(kAll, u[2 * i], u[2 * i + 1], 0xDD));
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i)  // pairs of lanes
    x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0xEE));
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], 0x88),
                                    _mm512_shuffle_ps(x[0], x[1], 0xDD));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#pragma GCC unroll 16
  for (int i = 0; i < MD; ++i)
    out[i] = _mm512_maskz_permutexvar_ps(kAll, _mm512_add_epi32(iota, _mm512_set1_epi32(i * ND)),
                                         sums);
#elif defined(__AVX2__)
  constexpr int kCount = MD * ND;
  // The same tree over 8 vectors: lane 4t+u holds slot 2u+t.
  constexpr int kGroups = (kCount + 7) / 8;
  alignas(32) float buf[kGroups * 8 + 8] = {};  // rows are read 8 lanes at a time
#pragma GCC unroll 4
  for (int g = 0; g < kGroups; ++g) {
    __m256 s[8], u[4], w[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const int src = 8 * g + 4 * (i % 2) + i / 2;
      s[i] = src < kCount ? acc[src] : _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)
      u[i] = _mm256_add_ps(_mm256_permute2f128_ps(s[2 * i], s[2 * i + 1], 0x20),
                           _mm256_permute2f128_ps(s[2 * i], s[2 * i + 1], 0x31));
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i)
      w[i] = _mm256_add_ps(_mm256_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                           _mm256_shuffle_ps(u[2 * i], u[2 * i + 1], 0xEE));
    _mm256_store_ps(buf + 8 * g, _mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], 0x88),
                                               _mm256_shuffle_ps(w[0], w[1], 0xDD)));
  }
#pragma GCC unroll 8
  for (int i = 0; i < MD; ++i) out[i] = _mm256_loadu_ps(buf + i * ND);
#else
#pragma GCC unroll 8
  for (int i = 0; i < MD; ++i) {
    vf r = vzero();
#pragma GCC unroll 8
    for (int j = 0; j < ND; ++j) {
      const vf v = acc[i * ND + j];
      float t = 0.0f;
      for (int l = 0; l < kW; ++l) t += v[l];
      r[j] = t;
    }
    out[i] = r;
  }
#endif
}

// acc[i·ND + j] += A[i, k..k+n) ⊙ B[j, k..k+n), lanes beyond n zero.
template <int MD, int ND, bool Full>
inline void step(vf* acc, const float* a, index_t lda, const float* b, index_t ldb, index_t k,
                 int n) {
  vf av[MD];
#pragma GCC unroll 8
  for (int i = 0; i < MD; ++i) av[i] = Full ? vload(a + i * lda + k) : vload_n(a + i * lda + k, n);
#pragma GCC unroll 8
  for (int j = 0; j < ND; ++j) {
    vf bj = Full ? vload(b + j * ldb + k) : vload_n(b + j * ldb + k, n);
    in_register(bj);
#pragma GCC unroll 8
    for (int i = 0; i < MD; ++i) acc[i * ND + j] = vfma(av[i], bj, acc[i * ND + j]);
  }
}

// C[MD, ND] = epilogue(A[MD, K] · B[ND, K]ᵀ). K is summed in whole vectors from
// its start whatever the operands' addresses, so a result never depends on where
// the arrays sit (aligning the loads first would make it); the rows of fastmlp's own
// parameters start on cache lines anyway (see the optimizer's flat buffers).
template <int MD, int ND>
void dot_tile(index_t K, const float* __restrict a, index_t lda,
              const float* __restrict b, index_t ldb, float* c, index_t ldc, float* z, index_t ldz,
              const float* bias, const TileEpilogue& e) {
  vf acc[MD * ND];
#pragma GCC unroll 16
  for (int t = 0; t < MD * ND; ++t) acc[t] = vzero();
  index_t k = 0;
  for (; k + kW <= K; k += kW) step<MD, ND, true>(acc, a, lda, b, ldb, k, kW);
  if (k < K) step<MD, ND, false>(acc, a, lda, b, ldb, k, static_cast<int>(K - k));
  vf rows[MD];
  reduce_tile<MD, ND>(acc, rows);
#pragma GCC unroll 8
  for (int i = 0; i < MD; ++i)
    store_vec<false>(c + i * ldc, z ? z + i * ldz : nullptr, bias, rows[i], ND, e);
  if (e.mode == ActMode::Pass) act_rows(c, ldc, MD, ND, e.act, e.act_param);
}

template <int MD, int ND = kDotN>
DotFn dot_for(index_t md, index_t nd) {
  if constexpr (ND == 1) {
    if constexpr (MD == 1) {
      (void)md;
      (void)nd;
      return dot_tile<1, 1>;
    } else {
      return md == MD ? dot_tile<MD, 1> : dot_for<MD - 1, kDotN>(md, nd);
    }
  } else {
    return md == MD && nd == ND ? dot_tile<MD, ND> : dot_for<MD, ND - 1>(md, nd);
  }
}

// Asks for lines [l0, l1) of rows [r0, r1) of B to be brought into L2.
inline void prefetch_rows(const float* b, index_t ldb, index_t r0, index_t r1, index_t l0, index_t l1) {
  for (index_t r = r0; r < r1; ++r) {
    const char* row = reinterpret_cast<const char*>(b + r * ldb);
    for (index_t l = l0; l < l1; ++l) __builtin_prefetch(row + l * 64, 0, 2);  // read, keep in L2
  }
}

}  // namespace

void dot_nt(const Problem& p) {
  const TileEpilogue e = tile_epilogue(p);
  float* const preact = p.ep.preact();
  const float* const bias = p.ep.bias();
  float* const weights = p.ep.weights();
  // Balanced tiles: ceil(M / kDotM) row blocks, ceil(N / kDotN) column blocks.
  const index_t mb = (p.M + kDotM - 1) / kDotM;
  const index_t nb = (p.N + kDotN - 1) / kDotN;
  // Keep the smaller operand streaming from cache and the other's tile in L1.
  const bool n_outer = p.M <= p.N;
  const index_t outer = n_outer ? nb : mb;
  const index_t inner = n_outer ? mb : nb;
  // With B's tiles outside, each tile of B is read from wherever the last step left the
  // weights (in a training loop, L3 or memory: a step moves more data through a core than
  // its L2 holds), by kDotN streams at once. Each of the inner steps over A therefore
  // also prefetches its share of the next tile's lines, which then arrive while the
  // current tile is multiplied: 0.95x the seed-004 loop's step time on an AVX-512 core.
  const index_t row_lines = (p.K * static_cast<index_t>(sizeof(float)) + 63) / 64;
  const index_t share = (row_lines + inner - 1) / inner;
  for (index_t o = 0; o < outer; ++o) {
    const index_t next0 = n_outer ? (o + 1) * p.N / nb : 0;
    const index_t next1 = n_outer && o + 1 < outer ? (o + 2) * p.N / nb : next0;
    for (index_t in = 0; in < inner; ++in) {
      if (next1 > next0) {
        const index_t l0 = in * share, l1 = l0 + share < row_lines ? l0 + share : row_lines;
        prefetch_rows(p.B, p.ldb, next0, next1, l0, l1);
      }
      const index_t ib = n_outer ? in : o;
      const index_t jb = n_outer ? o : in;
      const index_t m0 = ib * p.M / mb, m1 = (ib + 1) * p.M / mb;
      const index_t n0 = jb * p.N / nb, n1 = (jb + 1) * p.N / nb;
      const DotFn f = dot_for<kDotM>(m1 - m0, n1 - n0);
      f(p.K, p.A + m0 * p.lda, p.lda, p.B + n0 * p.ldb, p.ldb, p.C + m0 * p.ldc + n0,
        p.ldc, preact ? preact + m0 * p.ep.ldz() + n0 : nullptr, p.ep.ldz(), bias ? bias + n0 : nullptr, e);
      if (weights)
        descend_rows(weights + m0 * p.ep.sgd.ldw + n0, p.ep.sgd.ldw, p.C + m0 * p.ldc + n0, p.ldc, m1 - m0, n1 - n0,
                     p.ep.sgd.lr);
    }
  }
}

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
