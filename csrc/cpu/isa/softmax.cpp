// Row softmax / log-softmax, forward and backward, and the fused softmax cross
// entropy (loss and gradient from one sweep over each row) of one instruction set.
//
// Each row is processed with whole SIMD vectors plus one masked vector for its
// tail, so short rows (10 classes) cost a handful of vector operations. OpenMP
// splits long batches into blocks of rows; the loss sum is accumulated per fixed
// block of rows and the blocks are added in order, so it is bitwise the same for
// any thread count.
#include <cmath>
#include <cstring>

#include "common/mathfn.h"
#include "cpu/isa/isa.h"

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12 warns about the deliberately undefined registers inside its own intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

// Code reached from an OpenMP region is marked nothrow: the compiler then needs no
// exception-handling tables for the region, which would otherwise be emitted
// because it cannot tell that the SIMD intrinsics never throw.
#define FASTMLP_NOTHROW [[gnu::nothrow]]

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

// ---- a small SIMD layer: vf holds kW floats ------------------------------------
// vload_part / vstore_part touch only the first n < kW lanes; the other lanes of a
// partial load hold `fill`.
#if defined(__AVX512F__)
constexpr int kW = 16;
using vf = __m512;
inline __mmask16 lanes(index_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline vf vset1(float a) { return _mm512_set1_ps(a); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline vf vload_part(const float* p, index_t n, float fill) {
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes(n), p);
}
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline void vstore_part(float* p, vf v, index_t n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
inline vf vkeep(vf v, index_t n) { return _mm512_maskz_mov_ps(lanes(n), v); }  // lanes >= n are 0
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   // a·b + c
inline vf vfmsub(vf a, vf b, vf c) { return _mm512_fmsub_ps(a, b, c); }   // a·b - c
inline vf vfnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } // c - a·b
inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
// v[k] - a in lane k (0 <= k < kW), v elsewhere
inline vf vsub_lane(vf v, std::int64_t k, float a) {
  return _mm512_mask_sub_ps(v, static_cast<__mmask16>(1u << k), v, _mm512_set1_ps(a));
}
inline float hsum(vf v) { return _mm512_reduce_add_ps(v); }
inline float hmax(vf v) { return _mm512_reduce_max_ps(v); }
#elif defined(__AVX2__)
constexpr int kW = 8;
using vf = __m256;
inline __m256i lanes(index_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline vf vset1(float a) { return _mm256_set1_ps(a); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline vf vload_part(const float* p, index_t n, float fill) {
  const __m256i m = lanes(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline void vstore_part(float* p, vf v, index_t n) { _mm256_maskstore_ps(p, lanes(n), v); }
inline vf vkeep(vf v, index_t n) { return _mm256_and_ps(v, _mm256_castsi256_ps(lanes(n))); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vfmsub(vf a, vf b, vf c) { return _mm256_fmsub_ps(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vsub_lane(vf v, std::int64_t k, float a) {
  const __m256i hit =
      _mm256_cmpeq_epi32(_mm256_set1_epi32(static_cast<int>(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_sub_ps(v, _mm256_and_ps(_mm256_castsi256_ps(hit), _mm256_set1_ps(a)));
}
inline float hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(vf v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
// Portable: fixed-size loops that compilers turn into SIMD instructions.
constexpr int kW = 8;
struct vf {
  float v[kW];
};
#define FASTMLP_LANES(expr)                \
  vf r;                                    \
  _Pragma("omp simd") for (int i = 0; i < kW; ++i) r.v[i] = (expr); \
  return r
inline vf vset1(float a) { FASTMLP_LANES(a); }
inline vf vload(const float* p) { FASTMLP_LANES(p[i]); }
inline vf vload_part(const float* p, index_t n, float fill) { FASTMLP_LANES(i < n ? p[i] : fill); }
inline void vstore(float* p, vf v) {
  for (int i = 0; i < kW; ++i) p[i] = v.v[i];
}
inline void vstore_part(float* p, vf v, index_t n) {
  for (int i = 0; i < n; ++i) p[i] = v.v[i];
}
inline vf vkeep(vf v, index_t n) { FASTMLP_LANES(i < n ? v.v[i] : 0.0f); }
inline vf vadd(vf a, vf b) { FASTMLP_LANES(a.v[i] + b.v[i]); }
inline vf vsub(vf a, vf b) { FASTMLP_LANES(a.v[i] - b.v[i]); }
inline vf vmul(vf a, vf b) { FASTMLP_LANES(a.v[i] * b.v[i]); }
inline vf vfmadd(vf a, vf b, vf c) { FASTMLP_LANES(a.v[i] * b.v[i] + c.v[i]); }
inline vf vfmsub(vf a, vf b, vf c) { FASTMLP_LANES(a.v[i] * b.v[i] - c.v[i]); }
inline vf vfnmadd(vf a, vf b, vf c) { FASTMLP_LANES(c.v[i] - a.v[i] * b.v[i]); }
inline vf vmax(vf a, vf b) { FASTMLP_LANES(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
inline vf vsub_lane(vf v, std::int64_t k, float a) { FASTMLP_LANES(i == k ? v.v[i] - a : v.v[i]); }
// e^x as the SIMD versions below compute it: clamped to [-104, 89], 2^k applied as
// two normal factors, so there are no special-case selects to vectorize.
inline float exp_lane(float x) {
  x = x < -104.0f ? -104.0f : x;  // NaN passes both comparisons unchanged
  x = x > 89.0f ? 89.0f : x;
  const float kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - kf * 0.693145751953125f) - kf * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const std::int32_t k = static_cast<std::int32_t>(kf), kh = k >> 1;
  return p * fm_exp2_biased(kh + 127) * fm_exp2_biased(k - kh + 127);
}
inline vf vexp(vf a) { FASTMLP_LANES(exp_lane(a.v[i])); }
#undef FASTMLP_LANES
inline float hsum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < kW; ++i) s += v.v[i];
  return s;
}
inline float hmax(vf v) {
  float m = v.v[0];
  for (int i = 1; i < kW; ++i) m = v.v[i] > m ? v.v[i] : m;
  return m;
}
#endif

#if defined(__AVX512F__) || defined(__AVX2__)
// e^x as fm_exp computes it (k = round(x/ln2), e^r by a degree-7 Taylor polynomial
// on |r| <= ln2/2), for a whole vector. x is clamped to [-104, 89] first (e^-104
// rounds to 0 and e^89 overflows to inf, so ±inf come out right); NaN passes
// through because max/min return their second operand when either is NaN.
inline vf vexp(vf x) {
  x = vmax(vset1(-104.0f), x);
#if defined(__AVX512F__)
  x = _mm512_min_ps(vset1(89.0f), x);
  const vf kf = _mm512_roundscale_ps(vmul(x, vset1(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  x = _mm256_min_ps(vset1(89.0f), x);
  const vf kf = _mm256_round_ps(vmul(x, vset1(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#endif
  vf r = vfnmadd(kf, vset1(0.693145751953125f), x);
  r = vfnmadd(kf, vset1(1.428606765330187e-06f), r);
  vf p = vset1(1.0f / 5040.0f);
  p = vfmadd(p, r, vset1(1.0f / 720.0f));
  p = vfmadd(p, r, vset1(1.0f / 120.0f));
  p = vfmadd(p, r, vset1(1.0f / 24.0f));
  p = vfmadd(p, r, vset1(1.0f / 6.0f));
  p = vfmadd(p, r, vset1(0.5f));
  p = vfmadd(p, r, vset1(1.0f));
  p = vfmadd(p, r, vset1(1.0f));
#if defined(__AVX512F__)
  return _mm512_scalef_ps(p, kf);  // p·2^k, rounded once (underflow and overflow included)
#else
  // 2^k with k in [-150, 129] as 2^(k/2)·2^(k - k/2): both factors are normal floats.
  const __m256i k = _mm256_cvtps_epi32(kf);
  const __m256i kh = _mm256_srai_epi32(k, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(kh, bias), 23));
  const vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(k, kh), bias), 23));
  return vmul(vmul(p, s1), s2);
#endif
}
#endif

// ---- row primitives ------------------------------------------------------------

// max_c x[c]; -inf for an empty row.
inline float row_max(const float* x, index_t n) {
  vf m0 = vset1(-INFINITY), m1 = m0;
  index_t c = 0;
  for (; c + 2 * kW <= n; c += 2 * kW) {
    m0 = vmax(m0, vload(x + c));
    m1 = vmax(m1, vload(x + c + kW));
  }
  if (c + kW <= n) {
    m0 = vmax(m0, vload(x + c));
    c += kW;
  }
  if (c < n) m1 = vmax(m1, vload_part(x + c, n - c, -INFINITY));
  return hmax(vmax(m0, m1));
}

// Σ_c e^(x[c] - mx), storing the terms in e when it is not null.
template <bool kStore>
inline float row_exp_sum(float* e, const float* x, index_t n, float mx) {
  const vf m = vset1(mx);
  vf s0 = vset1(0.0f), s1 = s0;
  index_t c = 0;
  for (; c + 2 * kW <= n; c += 2 * kW) {
    const vf e0 = vexp(vsub(vload(x + c), m));
    const vf e1 = vexp(vsub(vload(x + c + kW), m));
    if (kStore) {
      vstore(e + c, e0);
      vstore(e + c + kW, e1);
    }
    s0 = vadd(s0, e0);
    s1 = vadd(s1, e1);
  }
  if (c + kW <= n) {
    const vf e0 = vexp(vsub(vload(x + c), m));
    if (kStore) vstore(e + c, e0);
    s0 = vadd(s0, e0);
    c += kW;
  }
  if (c < n) {
    const vf e1 = vkeep(vexp(vsub(vload_part(x + c, n - c, 0.0f), m)), n - c);
    if (kStore) vstore_part(e + c, e1, n - c);
    s1 = vadd(s1, e1);
  }
  return hsum(vadd(s0, s1));
}

// y[c] *= a
inline void row_scale(float* y, index_t n, float a) {
  const vf va = vset1(a);
  index_t c = 0;
  for (; c + kW <= n; c += kW) vstore(y + c, vmul(vload(y + c), va));
  if (c < n) vstore_part(y + c, vmul(vload_part(y + c, n - c, 0.0f), va), n - c);
}

// ---- softmax forward / backward ---------------------------------------------------

// Elements a thread must get before threads pay off: about 30 µs of work, well above
// the cost of waking a sleeping worker thread.
constexpr index_t kRowWork = 1 << 17;

// Short rows (one register each) are processed this many at a time, side by side, so
// that their dependency chains (max, exp, sum) overlap.
constexpr int kTogether = 8;

// y = softmax(x) = e^(x - max) / Σ e^(x - max), or
// y = log_softmax(x) = (x - max) - log Σ e^(x - max), row by row over [rows, cols].
// Rows [r0, r1) go in groups of kGroup: each row's max and sum, then (log_softmax)
// the group's logs as one vector loop, then the outputs. kSmall: cols <= kW.
template <bool kSmall>
FASTMLP_NOTHROW void softmax_rows(float* y, const float* x, index_t r0, index_t r1, index_t cols, bool log) {
  constexpr int kGroup = 64;
  float maxes[kGroup], sums[kGroup], logs[kGroup];
  for (index_t rb = r0; rb < r1; rb += kGroup) {
    const int n = static_cast<int>(rb + kGroup < r1 ? kGroup : r1 - rb);
    int i = 0;
    if (kSmall) {
      for (; i + kTogether <= n; i += kTogether) {
        vf v[kTogether], e[kTogether];
        float mx[kTogether], sum[kTogether];
        for (int j = 0; j < kTogether; ++j) v[j] = vload_part(x + (rb + i + j) * cols, cols, -INFINITY);
        for (int j = 0; j < kTogether; ++j) mx[j] = hmax(v[j]);
        for (int j = 0; j < kTogether; ++j) e[j] = vexp(vsub(v[j], vset1(mx[j])));
        for (int j = 0; j < kTogether; ++j) sum[j] = hsum(e[j]);
        for (int j = 0; j < kTogether; ++j) {
          if (!log) vstore_part(y + (rb + i + j) * cols, vmul(e[j], vset1(1.0f / sum[j])), cols);
          maxes[i + j] = mx[j];
          sums[i + j] = sum[j];
        }
      }
    }
    for (; i < n; ++i) {
      const float* xr = x + (rb + i) * cols;
      float* yr = y + (rb + i) * cols;
      if (kSmall) {
        const vf v = vload_part(xr, cols, -INFINITY);
        const float mx = hmax(v);
        const vf e = vexp(vsub(v, vset1(mx)));
        const float sum = hsum(e);
        if (!log) vstore_part(yr, vmul(e, vset1(1.0f / sum)), cols);
        maxes[i] = mx;
        sums[i] = sum;
      } else {
        const float mx = row_max(xr, cols);
        if (!log) {
          row_scale(yr, cols, 1.0f / row_exp_sum<true>(yr, xr, cols, mx));
        } else {
          maxes[i] = mx;
          sums[i] = row_exp_sum<false>(nullptr, xr, cols, mx);
        }
      }
    }
    if (!log) continue;
#pragma omp simd
    for (int j = 0; j < n; ++j) logs[j] = fm_log(sums[j]);
    for (int j = 0; j < n; ++j) {
      const float* xr = x + (rb + j) * cols;
      float* yr = y + (rb + j) * cols;
      const vf m = vset1(maxes[j]), ls = vset1(logs[j]);
      index_t c = 0;
      for (; !kSmall && c + kW <= cols; c += kW) vstore(yr + c, vsub(vsub(vload(xr + c), m), ls));
      if (c < cols) vstore_part(yr + c, vsub(vsub(vload_part(xr + c, cols - c, 0.0f), m), ls), cols - c);
    }
  }
}

void softmax_forward_kernel(float* y, const float* x, index_t rows, index_t cols, bool log) {
  if (rows <= 0 || cols <= 0) return;
  constexpr index_t kBlock = 64;
  const index_t nblocks = (rows + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * cols, kRowWork))
  for (index_t b = 0; b < nblocks; ++b) {
    const index_t r0 = b * kBlock, r1 = r0 + kBlock < rows ? r0 + kBlock : rows;
    if (cols <= kW) softmax_rows<true>(y, x, r0, r1, cols, log);
    else softmax_rows<false>(y, x, r0, r1, cols, log);
  }
}

// softmax:     dx = y ⊙ (dy - Σ_j dy_j·y_j)
// log_softmax: dx = dy - e^y · Σ_j dy_j
FASTMLP_NOTHROW void softmax_backward_row(float* dxr, const float* dyr, const float* yr, index_t cols,
                                          bool log) {
  vf a0 = vset1(0.0f), a1 = a0;
  index_t c = 0;
  for (; c + 2 * kW <= cols; c += 2 * kW) {
    const vf d0 = vload(dyr + c), d1 = vload(dyr + c + kW);
    a0 = log ? vadd(a0, d0) : vfmadd(d0, vload(yr + c), a0);
    a1 = log ? vadd(a1, d1) : vfmadd(d1, vload(yr + c + kW), a1);
  }
  for (; c + kW <= cols; c += kW) {
    const vf d0 = vload(dyr + c);
    a0 = log ? vadd(a0, d0) : vfmadd(d0, vload(yr + c), a0);
  }
  if (c < cols) {
    const vf d1 = vload_part(dyr + c, cols - c, 0.0f);
    a1 = log ? vadd(a1, d1) : vfmadd(d1, vload_part(yr + c, cols - c, 0.0f), a1);
  }
  const vf s = vset1(hsum(vadd(a0, a1)));
  c = 0;
  if (log) {
    for (; c + kW <= cols; c += kW) vstore(dxr + c, vfnmadd(vexp(vload(yr + c)), s, vload(dyr + c)));
    if (c < cols) {
      const index_t t = cols - c;
      vstore_part(dxr + c, vfnmadd(vexp(vload_part(yr + c, t, 0.0f)), s, vload_part(dyr + c, t, 0.0f)), t);
    }
  } else {
    for (; c + kW <= cols; c += kW) vstore(dxr + c, vmul(vload(yr + c), vsub(vload(dyr + c), s)));
    if (c < cols) {
      const index_t t = cols - c;
      vstore_part(dxr + c, vmul(vload_part(yr + c, t, 0.0f), vsub(vload_part(dyr + c, t, 0.0f), s)), t);
    }
  }
}

void softmax_backward_kernel(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                             bool log) {
  if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * cols, kRowWork))
  for (index_t r = 0; r < rows; ++r) softmax_backward_row(dx + r * cols, dy + r * cols, y + r * cols, cols, log);
}

// ---- fused softmax cross entropy ------------------------------------------------

// Per-call constants of the cross entropy.
struct XentParams {
  const float* weight;  // class weights or null
  double eps;           // label smoothing ε
  double eps_c;         // ε / C
  double total_w;       // Σ_c w[c]
  double scale;         // grad_scale, divided by the weight sum when asked
};

// What a row leaves for its loss; the logs are taken later, a vector of rows at a time.
struct RowStats {
  float sum;     // s = Σ_c e^(z_c - m)
  float gap;     // m - z_y
  float smooth;  // Σ_c w_c·(z_c - m)
};

// One row: its statistics and, when kGrad, scale·∂loss_i/∂z in g.
//   m = max z, s = Σ e^(z-m), log p_c = (z_c - m) - log s
//   loss = (1-ε)·w_y·(-log p_y) + ε/C·Σ_c w_c·(-log p_c)
//        = (1-ε)·w_y·(m - z_y + log s) + ε/C·(W·log s - Σ_c w_c·(z_c - m)),   W = Σ_c w_c
//   ∂loss/∂z_c = ((1-ε)·w_y + ε/C·W)·p_c - ε/C·w_c - (1-ε)·w_y·[c = y]
// Writing Σ w_c·(z_c - m) with z_c - m <= 0 keeps every term of the smoothing sum
// of one sign, so logits of any magnitude lose nothing to cancellation.
// kSmall: C <= kW, the whole row in one register (wv holds the class weights).
template <bool kGrad, bool kSmooth, bool kWeighted, bool kSmall>
inline RowStats xent_row(float* g, const float* z, index_t C, std::int64_t y, const XentParams& P, vf wv) {
  const float* w = P.weight;
  const double wy = w ? w[y] : 1.0;
  RowStats st;
  if (kSmall) {
    const vf v = vload_part(z, C, -INFINITY);
    const float mx = hmax(v);
    const vf d = vsub(v, vset1(mx));
    const vf e = vexp(d);  // 0 beyond C
    st.sum = hsum(e);
    st.gap = mx - z[y];
    st.smooth = 0.0f;
    if (kSmooth) st.smooth = hsum(kWeighted ? vmul(wv, vkeep(d, C)) : vkeep(d, C));
    if (kGrad) {
      const double hot = (1.0 - P.eps) * wy;
      vf gc = vmul(vset1(static_cast<float>(P.scale * (hot + P.eps_c * P.total_w)) / st.sum), e);
      if (kSmooth) {
        const vf b = vset1(static_cast<float>(P.scale * P.eps_c));
        gc = kWeighted ? vfnmadd(b, wv, gc) : vsub(gc, b);
      }
      vstore_part(g, vsub_lane(gc, y, static_cast<float>(P.scale * hot)), C);
    }
    return st;
  }
  const float mx = row_max(z, C);
  const vf m = vset1(mx);
  vf s0 = vset1(0.0f), s1 = s0;  // Σ e^(z-m)
  vf d0 = vset1(0.0f), d1 = d0;  // Σ w·(z-m)
  index_t c = 0;
  for (; c + kW <= C; c += kW) {
    const vf d = vsub(vload(z + c), m);
    const vf e = vexp(d);
    if (kGrad) vstore(g + c, e);
    s0 = vadd(s0, e);
    if (kSmooth) d0 = kWeighted ? vfmadd(vload(w + c), d, d0) : vadd(d0, d);
  }
  if (c < C) {
    const index_t t = C - c;
    const vf d = vkeep(vsub(vload_part(z + c, t, 0.0f), m), t);
    const vf e = vkeep(vexp(d), t);
    if (kGrad) vstore_part(g + c, e, t);
    s1 = vadd(s1, e);
    if (kSmooth) d1 = kWeighted ? vfmadd(vload_part(w + c, t, 0.0f), d, d1) : vadd(d1, d);
  }
  st.sum = hsum(vadd(s0, s1));
  st.gap = mx - z[y];
  st.smooth = kSmooth ? hsum(vadd(d0, d1)) : 0.0f;
  if (kGrad) {
    const double hot = (1.0 - P.eps) * wy;
    const vf a = vset1(static_cast<float>(P.scale * (hot + P.eps_c * P.total_w)) / st.sum);
    const vf b = vset1(static_cast<float>(P.scale * P.eps_c));
    for (c = 0; c + kW <= C; c += kW) {
      vf gc = vmul(a, vload(g + c));
      if (kSmooth) gc = kWeighted ? vfnmadd(b, vload(w + c), gc) : vsub(gc, b);
      vstore(g + c, gc);
    }
    if (c < C) {
      const index_t t = C - c;
      vf gc = vmul(a, vload_part(g + c, t, 0.0f));
      if (kSmooth) gc = kWeighted ? vfnmadd(b, vload_part(w + c, t, 0.0f), gc) : vsub(gc, b);
      vstore_part(g + c, gc, t);
    }
    g[y] -= static_cast<float>(P.scale * hot);
  }
  return st;
}

// kTogether short rows (cols <= kW) starting at row r, none of them ignored, side by
// side so that their dependency chains overlap; the same math as xent_row.
template <bool kGrad, bool kSmooth, bool kWeighted>
inline void xent_small_rows(float* dlogits, const float* logits, const std::int64_t* labels, index_t r,
                            index_t C, const XentParams& P, vf wv, float* sums, float* gaps, float* smooths) {
  vf d[kTogether], e[kTogether];
  float mx[kTogether];
  for (int j = 0; j < kTogether; ++j) d[j] = vload_part(logits + (r + j) * C, C, -INFINITY);
  for (int j = 0; j < kTogether; ++j) mx[j] = hmax(d[j]);
  for (int j = 0; j < kTogether; ++j) d[j] = vsub(d[j], vset1(mx[j]));
  for (int j = 0; j < kTogether; ++j) e[j] = vexp(d[j]);
  for (int j = 0; j < kTogether; ++j) sums[j] = hsum(e[j]);
  for (int j = 0; j < kTogether; ++j) gaps[j] = mx[j] - logits[(r + j) * C + labels[r + j]];
  for (int j = 0; j < kTogether; ++j)
    smooths[j] = kSmooth ? hsum(kWeighted ? vmul(wv, vkeep(d[j], C)) : vkeep(d[j], C)) : 0.0f;
  if (!kGrad) return;
  const vf b = vset1(static_cast<float>(P.scale * P.eps_c));
  for (int j = 0; j < kTogether; ++j) {
    const std::int64_t y = labels[r + j];
    const double hot = (1.0 - P.eps) * (P.weight ? P.weight[y] : 1.0);
    vf gc = vmul(vset1(static_cast<float>(P.scale * (hot + P.eps_c * P.total_w)) / sums[j]), e[j]);
    if (kSmooth) gc = kWeighted ? vfnmadd(b, wv, gc) : vsub(gc, b);
    vstore_part(dlogits + (r + j) * C, vsub_lane(gc, y, static_cast<float>(P.scale * hot)), C);
  }
}

// Rows [r0, r1): returns Σ loss_i in row order. Rows go in groups of kGroup: first
// each row's statistics (and gradient), then the group's logs as one vector loop.
template <bool kGrad, bool kSmooth, bool kWeighted, bool kSmall>
double xent_rows(float* dlogits, float* row_loss, const float* logits, const std::int64_t* labels,
                 index_t r0, index_t r1, index_t cols, std::int64_t ignore_index, const XentParams& P) {
  constexpr int kGroup = 64;
  const vf wv = kSmall && kWeighted ? vload_part(P.weight, cols, 0.0f) : vset1(0.0f);
  float sums[kGroup], gaps[kGroup], smooths[kGroup], logs[kGroup];
  double total = 0.0;
  for (index_t rb = r0; rb < r1; rb += kGroup) {
    const int n = static_cast<int>(rb + kGroup < r1 ? kGroup : r1 - rb);
    int i = 0;
    if (kSmall) {
      for (; i + kTogether <= n; i += kTogether) {
        bool any_ignored = false;
        for (int j = 0; j < kTogether; ++j) any_ignored |= labels[rb + i + j] == ignore_index;
        if (any_ignored) break;  // finish the group row by row
        xent_small_rows<kGrad, kSmooth, kWeighted>(dlogits, logits, labels, rb + i, cols, P, wv, sums + i,
                                                   gaps + i, smooths + i);
      }
    }
    for (; i < n; ++i) {
      const index_t r = rb + i;
      const std::int64_t y = labels[r];
      if (y == ignore_index) {
        if (kGrad) std::memset(dlogits + r * cols, 0, sizeof(float) * static_cast<std::size_t>(cols));
        sums[i] = 1.0f;
        gaps[i] = smooths[i] = 0.0f;
        continue;
      }
      const RowStats st = xent_row<kGrad, kSmooth, kWeighted, kSmall>(kGrad ? dlogits + r * cols : nullptr,
                                                                      logits + r * cols, cols, y, P, wv);
      sums[i] = st.sum;
      gaps[i] = st.gap;
      smooths[i] = st.smooth;
    }
#pragma omp simd
    for (int j = 0; j < n; ++j) logs[j] = fm_log(sums[j]);
    for (int j = 0; j < n; ++j) {
      const std::int64_t y = labels[rb + j];
      double loss = 0.0;
      if (y != ignore_index) {
        const double ls = logs[j], wy = P.weight ? P.weight[y] : 1.0;
        loss = (1.0 - P.eps) * wy * (static_cast<double>(gaps[j]) + ls);
        if (kSmooth) loss += P.eps_c * (P.total_w * ls - static_cast<double>(smooths[j]));
      }
      if (row_loss) row_loss[rb + j] = static_cast<float>(loss);
      total += loss;
    }
  }
  return total;
}

using XentRowsFn = double (*)(float*, float*, const float*, const std::int64_t*, index_t, index_t, index_t,
                              std::int64_t, const XentParams&);

// Called from the OpenMP region (see FASTMLP_NOTHROW).
FASTMLP_NOTHROW double run_xent_rows(XentRowsFn fn, float* dlogits, float* row_loss, const float* logits,
                                     const std::int64_t* labels, index_t r0, index_t r1, index_t cols,
                                     std::int64_t ignore_index, const XentParams& P) {
  return fn(dlogits, row_loss, logits, labels, r0, r1, cols, ignore_index, P);
}

template <bool kGrad, bool kSmall>
XentRowsFn pick_xent_rows(bool smooth, bool weighted) {
  if (!smooth) return xent_rows<kGrad, false, false, kSmall>;  // the weight enters only through w[y]
  return weighted ? xent_rows<kGrad, true, true, kSmall> : xent_rows<kGrad, true, false, kSmall>;
}

// Loss partial sums are kept per block of rows, at most kMaxBlocks of them.
constexpr index_t kMaxBlocks = 256;

inline double weight_sum(const std::int64_t* labels, const float* w, index_t rows, std::int64_t ignore) {
  double s = 0.0;
  for (index_t r = 0; r < rows; ++r)
    if (labels[r] != ignore) s += w ? w[labels[r]] : 1.0;
  return s;
}

}  // namespace

// Cross entropy of softmax(logits) against class indices (see kernels.h); also
// used by fill_loss.
LossSums softmax_xent_kernel(float* dlogits, float* row_loss, const float* logits,
                             const std::int64_t* labels, const float* class_weight, index_t rows,
                             index_t cols, std::int64_t ignore_index, float label_smoothing,
                             float grad_scale, bool divide_by_weight_sum) {
  const double wsum = weight_sum(labels, class_weight, rows, ignore_index);
  XentParams P;
  P.weight = class_weight;
  P.eps = label_smoothing;
  P.eps_c = cols > 0 ? P.eps / static_cast<double>(cols) : 0.0;
  P.total_w = static_cast<double>(cols);
  if (class_weight && label_smoothing != 0.0f) {
    P.total_w = 0.0;
    for (index_t c = 0; c < cols; ++c) P.total_w += class_weight[c];
  }
  P.scale = divide_by_weight_sum ? grad_scale / wsum : grad_scale;
  const bool smooth = label_smoothing != 0.0f, weighted = class_weight != nullptr;
  XentRowsFn fn;
  if (cols <= kW)
    fn = dlogits ? pick_xent_rows<true, true>(smooth, weighted) : pick_xent_rows<false, true>(smooth, weighted);
  else
    fn = dlogits ? pick_xent_rows<true, false>(smooth, weighted) : pick_xent_rows<false, false>(smooth, weighted);

  // Fixed blocks of rows (their size depends on `rows` only) make the sum independent
  // of how the blocks are shared among threads.
  index_t block = (rows + kMaxBlocks - 1) / kMaxBlocks;
  if (block < 16) block = 16;
  const index_t nblocks = rows > 0 ? (rows + block - 1) / block : 0;
  double partial[kMaxBlocks];
  const int nt = threads_for(rows * cols, kRowWork);
  if (nt <= 1) {  // a training step's loss: no parallel region for one thread (about half a microsecond)
    for (index_t b = 0; b < nblocks; ++b) {
      const index_t r0 = b * block, r1 = r0 + block < rows ? r0 + block : rows;
      partial[b] = run_xent_rows(fn, dlogits, row_loss, logits, labels, r0, r1, cols, ignore_index, P);
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (index_t b = 0; b < nblocks; ++b) {
      const index_t r0 = b * block, r1 = r0 + block < rows ? r0 + block : rows;
      partial[b] = run_xent_rows(fn, dlogits, row_loss, logits, labels, r0, r1, cols, ignore_index, P);
    }
  }
  double loss_sum = 0.0;
  for (index_t b = 0; b < nblocks; ++b) loss_sum += partial[b];
  return LossSums{loss_sum, wsum};
}

void fill_softmax(KernelTable& t) {
  t.softmax_forward = softmax_forward_kernel;
  t.softmax_backward = softmax_backward_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
