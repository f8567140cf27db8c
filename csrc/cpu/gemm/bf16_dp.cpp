// The bfloat16 GEMM on AVX512-BF16: vdpbf16ps multiplies pairs of bfloat16 values and
// adds both products to a float32 lane, twice the multiply-adds per instruction of a
// float32 FMA. K is therefore packed in pairs: one 32-bit lane holds op(·)[k] in its
// low half and op(·)[k+1] in its high half (k even), the bfloat16 values rounded to
// nearest even from the float32 operands as they are packed (common/bf16.h), an odd K
// padded with a zero. The loops are those of the float32 packed path (driver.cpp):
// jc over nc columns of C, pc over K blocks (pack B), ic over mc rows (pack A), then
// the register tiles, ukernel_avx512bf16_14x32, whose epilogue is the float32 one
// (epilogue.h). The kernel set built with -mavx512bf16 runs it as its bfloat16 GEMM. The
// other sets compile it with an emulation of vdpbf16ps (two float32 FMAs on the unpacked
// halves, high half first, as the instruction's definition adds them), reachable only
// through KernelTable::gemm_bf16_pairs: the tests run this file's packing, blocking and
// epilogue on any CPU that way, so that only the instruction itself needs AVX512-BF16 hardware.
//
// vdpbf16ps treats bfloat16 denormals as zero (and flushes denormal results); the
// products of normal bfloat16 values are exact in float32, and the two of a pair are
// added to the accumulator in one rounding, so results differ from the float32-FMA
// path only in the rounding of the sum.
#include "cpu/gemm/pairs.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {

namespace {

// Pairs of K per cache block: the same bytes of a packed panel as kKC floats, twice the K.
constexpr index_t kKP = kKC;

// Rows [r0, r0+h) of op(A), K range [k0, k0+kc): dst[t·h + i] = pair(k0+2t, k0+2t+1) of row r0+i.
void pack_a_pairs(std::uint32_t* dst, const Problem& p, index_t r0, index_t h, index_t k0, index_t kc) {
  const index_t kcp = ceil_div(kc, 2), even = kc / 2;
  for (index_t i = 0; i < h; ++i) {
    const index_t m = r0 + i;
    for (index_t t = 0; t < even; ++t)
      dst[t * h + i] = pair_of(a_at(p, m, k0 + 2 * t), a_at(p, m, k0 + 2 * t + 1));
    if (kcp > even) dst[even * h + i] = pair_of(a_at(p, m, k0 + 2 * even), 0.0f);
  }
}

// Columns [j0, j0+w) of op(B) (w <= kNR, zero-padded to kNR), K range [k0, k0+kc):
// dst[t·kNR + j] = pair(k0+2t, k0+2t+1) of column j0+j.
void pack_b_pairs(std::uint32_t* dst, const Problem& p, index_t j0, index_t w, index_t k0, index_t kc) {
  const index_t kcp = ceil_div(kc, 2);
  for (index_t t = 0; t < kcp; ++t) {
    const index_t k = k0 + 2 * t;
    const bool odd_tail = k + 1 >= k0 + kc;
    std::uint32_t* d = dst + t * kNR;
    for (index_t j = 0; j < w; ++j)
      d[j] = pair_of(b_at(p, k, j0 + j), odd_tail ? 0.0f : b_at(p, k + 1, j0 + j));
    for (index_t j = w; j < kNR; ++j) d[j] = 0;
  }
}

// A vector of bfloat16 pairs (kW 32-bit lanes), and acc += the sum of each lane's two products.
#if defined(__AVX512BF16__)
using pv = __m512bh;
inline pv as_bh(__m512i v) {
  pv r;
  __builtin_memcpy(&r, &v, sizeof r);
  return r;
}
inline pv pload(const std::uint32_t* p) { return as_bh(_mm512_loadu_si512(p)); }
inline pv pbroadcast(std::uint32_t x) { return as_bh(_mm512_set1_epi32(static_cast<int>(x))); }
inline vf pdot(vf acc, pv a, pv b) { return _mm512_dpbf16_ps(acc, a, b); }
#else
typedef std::uint32_t pv __attribute__((vector_size(sizeof(vf))));
inline pv pload(const std::uint32_t* p) {
  pv r;
  __builtin_memcpy(&r, p, sizeof r);
  return r;
}
inline pv pbroadcast(std::uint32_t x) { return pv{} + x; }
inline vf as_vf(pv u) {
  vf f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}
inline vf pdot(vf acc, pv a, pv b) {
  acc = vfma(as_vf(a & 0xFFFF0000u), as_vf(b & 0xFFFF0000u), acc);
  return vfma(as_vf(a << 16), as_vf(b << 16), acc);
}
#endif

// C[MR, nv] = epilogue(Σ_t a_pairs[t] · b_pairs[t]) over kcp pairs; the epilogue as ukernel's.
template <int MR>
void ukernel_dp(index_t kcp, const std::uint32_t* __restrict a, const std::uint32_t* __restrict b, float* c,
                index_t ldc, float* z, index_t ldz, const float* bias, int nv, const TileEpilogue& epi) {
  const TileEpilogue e = epi;
  vf acc[MR][kNV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) acc[i][j] = vzero();
  for (index_t t = 0; t < kcp; ++t) {
    pv bv[kNV];
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) bv[j] = pload(b + j * kW);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const pv ai = pbroadcast(a[i]);
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) acc[i][j] = pdot(acc[i][j], ai, bv[j]);
    }
    a += MR;
    b += kNR;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) store_row<kNV>(c + i * ldc, z ? z + i * ldz : nullptr, bias, acc[i], nv, e);
  if (e.final && e.mode == ActMode::Pass) act_rows(c, ldc, MR, nv, e.act, e.act_param);
}

using DpFn = void (*)(index_t kcp, const std::uint32_t* a, const std::uint32_t* b, float* c, index_t ldc,
                      float* z, index_t ldz, const float* bias, int nv, const TileEpilogue& e);

template <int H = kMR>
DpFn dp_for(index_t h) {
  if constexpr (H == 1) {
    (void)h;
    return ukernel_dp<1>;
  } else {
    return h == H ? ukernel_dp<H> : dp_for<H - 1>(h);
  }
}

}  // namespace

void packed_dpbf16(const Problem& p) {
  const index_t pairs = ceil_div(p.K, 2);
  const index_t kblocks = ceil_div(pairs, kKP), kcp_max = ceil_div(pairs, kblocks);
  const index_t mblocks = ceil_div(p.M, kMC), mc_max = ceil_div(p.M, mblocks);
  const index_t nblocks = ceil_div(p.N, kNC);
  const index_t nc_max = ceil_div(ceil_div(p.N, nblocks), kNR) * kNR;
  const index_t a_size = ceil_div(mc_max * kcp_max, 16) * 16;
  std::uint32_t* const ws = tls_pairs.get(static_cast<size_t>(a_size + kcp_max * nc_max));
  if (!ws) {
    unpacked(p);  // p.bf16: the operands rounded as they are read
    return;
  }
  std::uint32_t* const abuf = ws;
  std::uint32_t* const bbuf = ws + a_size;

  TileEpilogue e = tile_epilogue(p);
  for (index_t jb = 0; jb < nblocks; ++jb) {
    const index_t n0 = jb * p.N / nblocks, nc = (jb + 1) * p.N / nblocks - n0;
    const index_t q_count = ceil_div(nc, kNR);
    for (index_t kb = 0; kb < kblocks; ++kb) {
      const index_t t0 = kb * pairs / kblocks, t1 = (kb + 1) * pairs / kblocks;
      const index_t k0 = 2 * t0, kc = (2 * t1 < p.K ? 2 * t1 : p.K) - k0, kcp = t1 - t0;
      e.beta = kb == 0 ? p.beta : 1.0f;
      e.read_c = kb > 0 || p.beta != 0.0f;
      e.final = kb == kblocks - 1;
      const GemmEpilogue ep = e.final ? p.ep : GemmEpilogue::store();
      for (index_t q = 0; q < q_count; ++q) {
        const index_t j0 = n0 + q * kNR;
        pack_b_pairs(bbuf + q * kcp * kNR, p, j0, (kNR < n0 + nc - j0 ? kNR : n0 + nc - j0), k0, kc);
      }
      for (index_t ib = 0; ib < mblocks; ++ib) {
        const index_t m0 = ib * p.M / mblocks, mc = (ib + 1) * p.M / mblocks - m0;
        const index_t panels = ceil_div(mc, kMR);
        for (index_t s = 0; s < panels; ++s) {
          const index_t r0 = s * mc / panels, h = (s + 1) * mc / panels - r0;
          pack_a_pairs(abuf + r0 * kcp, p, m0 + r0, h, k0, kc);
        }
        const GemmEpilogue blk = ep.at(m0, n0);
        float* const w = blk.weights();
        float* const z = blk.preact();
        const float* const bias = blk.bias();
        for (index_t q = 0; q < q_count; ++q) {
          const index_t c0 = q * kNR;
          const int nv = static_cast<int>(nc - c0 < kNR ? nc - c0 : kNR);
          for (index_t s = 0; s < panels; ++s) {
            const index_t r0 = s * mc / panels, h = (s + 1) * mc / panels - r0;
            float* const c = p.C + (m0 + r0) * p.ldc + n0 + c0;
            dp_for(h)(kcp, abuf + r0 * kcp, bbuf + q * kcp * kNR, c, p.ldc,
                      z ? z + r0 * blk.ldz() + c0 : nullptr, blk.ldz(), bias ? bias + c0 : nullptr, nv, e);
            if (w) descend_rows(w + r0 * blk.sgd.ldw + c0, blk.sgd.ldw, c, p.ldc, h, nv, blk.sgd.lr);
          }
        }
      }
    }
  }
}

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
