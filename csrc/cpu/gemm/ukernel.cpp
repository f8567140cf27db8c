// Register-tiled outer-product micro-kernels (BLIS style) and the loop over the
// tiles of one packed block. The kernel for this instruction set is
// ukernel_<isa>_<kMR>x<kNR> (14x32 on AVX-512, 6x16 on AVX2, 4x8 generic);
// shorter row panels, used to balance the rows of C over panels, get the same
// kernel with fewer rows, so no work is wasted on padding rows.
#include "cpu/gemm/epilogue.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

using UkernelFn = void (*)(index_t kc, const float* a, const float* b, index_t b_ks, float* c,
                           index_t ldc, const float* c_next, float* z, index_t ldz,
                           const float* bias, int nv, const TileEpilogue& e);

// How far ahead (in rows of B) the kernel prefetches B, which may be read in place
// with a long row stride that the hardware prefetchers follow poorly.
constexpr index_t kPrefetchRows = 8;

// acc[i][j] = Σ_k a[k·MR + i] · b[k·b_ks + j]   (j < kNR)
// a: packed A panel (MR rows per k); b: kNR contiguous columns per k. First asks for
// the MR×kNR tile at `soon` (rows ld_soon apart), which the caller writes after the
// products, to be fetched for writing while they compute.
template <int MR>
inline void accumulate(index_t kc, const float* __restrict a, const float* __restrict b, index_t b_ks,
                       const float* soon, index_t ld_soon, vf (&acc)[MR][kNV]) {
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) acc[i][j] = vzero();
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(soon + i * ld_soon, 1);
    __builtin_prefetch(soon + i * ld_soon + kNR - 1, 1);
  }
  for (index_t k = 0; k < kc; ++k) {
#pragma GCC unroll 4
    for (int j = 0; j < kNR; j += 16) __builtin_prefetch(b + kPrefetchRows * b_ks + j);
    vf bv[kNV];
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) bv[j] = vload(b + j * kW);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vf ai = vset1(a[i]);
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) acc[i][j] = vfma(ai, bv[j], acc[i][j]);
    }
    a += MR;
    b += b_ks;
  }
}

// C[MR, nv] = epilogue(acc) (see accumulate); c_next: the tile of C the next call
// writes (only prefetched).
template <int MR, bool Plain>
void ukernel(index_t kc, const float* __restrict a, const float* __restrict b, index_t b_ks,
             float* c, index_t ldc, const float* c_next, float* z, index_t ldz,
             const float* bias, int nv, const TileEpilogue& epi) {
  // A local copy: stores to C cannot alias it, so its fields stay in registers
  // instead of being reloaded after every store of the epilogue.
  const TileEpilogue e = epi;
  vf acc[MR][kNV];
  // Fetch the next tile of C (its rows have the same stride) while this one computes:
  // with a short K the stores are what takes the time.
  accumulate<MR>(kc, a, b, b_ks, c_next, ldc, acc);
  if constexpr (Plain) {  // C = acc: no scaling, no C to read, nothing to add or keep
    (void)z, (void)ldz, (void)bias;
    if (nv == kNR) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < kNV; ++j) vstore(c + i * ldc + j * kW, acc[i][j]);
      return;
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    store_row<kNV>(c + i * ldc, z ? z + i * ldz : nullptr, bias, acc[i], nv, e);
  if (e.final && e.mode == ActMode::Pass) act_rows(c, ldc, MR, nv, e.act, e.act_param);
}

// A full-width tile of a weight gradient whose GEMM takes the SGD step
// (GemmEpilogue::Kind::SgdStep): C = acc (when c is non-null), then w -= lr·acc straight
// from the registers, the product rounded on its own as in descend_rows.
using DescendFn = void (*)(index_t kc, const float* a, const float* b, index_t b_ks, float* c, index_t ldc,
                           float* w, index_t ldw, float lr);

template <int MR>
void ukernel_descend(index_t kc, const float* __restrict a, const float* __restrict b, index_t b_ks, float* c,
                     index_t ldc, float* w, index_t ldw, float lr) {
  vf acc[MR][kNV];
  accumulate<MR>(kc, a, b, b_ks, w, ldw, acc);  // (the weights this tile steps, wanted at the end)
  const vf l = vset1(lr);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) {
      if (c) vstore(c + i * ldc + j * kW, acc[i][j]);
      vf step = vmul(l, acc[i][j]);
      in_register(step);
      float* wp = w + i * ldw + j * kW;
      vstore(wp, vsub(vload(wp), step));
    }
  }
}

template <int H = kMR>
DescendFn descend_for(index_t h) {
  if constexpr (H == 1) {
    (void)h;
    return ukernel_descend<1>;
  } else {
    return h == H ? ukernel_descend<H> : descend_for<H - 1>(h);
  }
}

// Whether a block's epilogue is a plain store of the accumulators (the weight
// gradients of a Linear layer, for one): then the kernel skips its checks.
inline bool plain_epilogue(const PackedBlock& k) {
  const TileEpilogue& e = k.epi;
  return e.alpha == 1.0f && !e.read_c &&
         (!e.final || (!k.ep.bias() && !k.ep.preact() && e.mode == ActMode::None));
}

// The kernel for a panel of h rows, 1 <= h <= kMR.
template <bool Plain, int H = kMR>
UkernelFn ukernel_for(index_t h) {
  if constexpr (H == 1) {
    (void)h;
    return ukernel<1, Plain>;
  } else {
    return h == H ? ukernel<H, Plain> : ukernel_for<Plain, H - 1>(h);
  }
}

UkernelFn ukernel_for(index_t h, bool plain) {
  return plain ? ukernel_for<true>(h) : ukernel_for<false>(h);
}

}  // namespace

void macro_kernel(const PackedBlock& k) {
  alignas(64) float scratch[kMR * kNR];
  // the block's epilogue, unpacked once (Store on the K blocks before the last)
  float* const w = k.epi.final ? k.ep.weights() : nullptr;
  const index_t ldw = k.ep.sgd.ldw;
  const float lr = k.ep.sgd.lr;
  float* const z = k.ep.preact();
  const index_t ldz = k.ep.ldz();
  const float* const bias = k.ep.bias();
  const bool to_scratch = k.scratch_c && w;
  const index_t q_count = (k.nc + kNR - 1) / kNR;
  // Panel heights differ by at most one: two kernels serve the whole block.
  const index_t h_lo = k.mc / k.panels;
  const bool plain = plain_epilogue(k);
  const UkernelFn f_lo = ukernel_for(h_lo, plain);
  const UkernelFn f_hi = h_lo < kMR ? ukernel_for(h_lo + 1, plain) : f_lo;
  // A plain weight gradient that steps its weights: full tiles do both in registers.
  const bool fused = plain && w;
  const DescendFn d_lo = fused ? descend_for(h_lo) : nullptr;
  const DescendFn d_hi = fused && h_lo < kMR ? descend_for(h_lo + 1) : d_lo;
  const index_t outer = k.rows_outer ? k.panels : q_count;
  const index_t inner = k.rows_outer ? q_count : k.panels;
  for (index_t o = 0; o < outer; ++o) {
    for (index_t in = 0; in < inner; ++in) {
      const index_t p = k.rows_outer ? o : in;
      const index_t q = k.rows_outer ? in : o;
      const index_t r0 = p * k.mc / k.panels;
      const index_t h = (p + 1) * k.mc / k.panels - r0;
      const index_t n0 = q * kNR;
      const int nv = static_cast<int>(k.nc - n0 < kNR ? k.nc - n0 : kNR);
      if (fused && nv == kNR) {
        (h == h_lo ? d_lo : d_hi)(k.kc, k.a + r0 * k.kc, k.b + q * k.b_ps, k.b_ks,
                                  to_scratch ? nullptr : k.c + r0 * k.ldc + n0, k.ldc, w + r0 * ldw + n0, ldw,
                                  lr);
        continue;
      }
      float* const c = to_scratch ? scratch : k.c + r0 * k.ldc + n0;
      const index_t ldc = to_scratch ? kNR : k.ldc;
      const float* c_next = c;  // (the scratch tile stays in L1)
      if (!to_scratch && k.rows_outer && q + 1 < q_count)
        c_next = c + kNR;
      else if (!to_scratch && !k.rows_outer && p + 1 < k.panels)
        c_next = c + h * ldc;
      const UkernelFn f = h == h_lo ? f_lo : f_hi;
      f(k.kc, k.a + r0 * k.kc, k.b + q * k.b_ps, k.b_ks, c, ldc, c_next,
        z ? z + r0 * ldz + n0 : nullptr, ldz, bias ? bias + n0 : nullptr, nv, k.epi);
      if (w) descend_rows(w + r0 * ldw + n0, ldw, c, ldc, h, nv, lr);
    }
  }
}

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
