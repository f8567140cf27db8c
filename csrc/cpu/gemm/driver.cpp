// GEMM entry point of one instruction set:
//   C[M,N] = act(alpha·op(A)·op(B) + beta·C + bias)        (see GemmFn in kernels.h)
// It handles the degenerate shapes, picks a path, splits C between threads when
// the work pays for them, and runs the BLIS loops of the packed path:
//   jc over nc columns of C, pc over kc of K (pack B), ic over mc rows (pack A),
//   then the macro-kernel's loops over register tiles (ukernel.cpp).
// Paths:
//   dot     A·Bᵀ with few rows of A (a Linear forward at small batch): dot.cpp,
//           no packing at all.
//   packed  everything else. A is always packed (it is small when M is small, and
//           amortised over N otherwise); B is packed when its panels are reused
//           across row panels or must be transposed, and read in place otherwise.
// gemm_bf16 takes the packed path (its packing rounds op(A) and op(B) to bfloat16),
// on the float32 micro-kernels, on AVX512-BF16 on the pair-packed kernel of bf16_dp.cpp,
// or on AMX tiles (bf16_amx.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cpu/gemm/epilogue.h"

namespace fastmlp::cpu::FASTMLP_ISA {
namespace gemm_impl {
namespace {

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline index_t min_i(index_t a, index_t b) { return a < b ? a : b; }

// Packing buffers of one thread. They grow to the largest problem seen and are
// kept, so steady-state calls neither allocate nor fault in fresh pages.
struct Workspace {
  float* data = nullptr;
  size_t floats = 0;
  ~Workspace() { std::free(data); }
  float* get(size_t n) {
    if (n > floats) {
      std::free(data);
      const size_t bytes = (n * sizeof(float) + 4095) / 4096 * 4096;
      data = static_cast<float*>(std::aligned_alloc(4096, bytes));
      floats = data ? bytes / sizeof(float) : 0;
    }
    return data;
  }
};
thread_local Workspace tls_workspace;
// A thread's partial product when two threads split K (split_k below).
thread_local Workspace tls_partial;

// C = act(beta·C + bias) when K == 0 (alpha·0 as the reference computes it).
void no_product(const Problem& p) {
  const float zero = p.alpha * 0.0f;
  for (index_t m = 0; m < p.M; ++m) {
    float* c = p.C + m * p.ldc;
    float* z = p.ep.preact() ? p.ep.preact() + m * p.ep.ldz() : nullptr;
    for (index_t n = 0; n < p.N; ++n) {
      float v = zero;
      if (p.beta != 0.0f) v += p.beta * c[n];
      if (p.ep.bias()) v += p.ep.bias()[n];
      if (z) z[n] = v;
      c[n] = act_forward(p.ep.act(), v, p.ep.act_param());
    }
    if (p.ep.weights()) descend_rows(p.ep.weights() + m * p.ep.sgd.ldw, p.ep.sgd.ldw, c, p.ldc, 1, p.N, p.ep.sgd.lr);
  }
}

}  // namespace

// Plain loops, for when no workspace can be allocated (see gemm.h).
void unpacked(const Problem& p) {
  for (index_t m = 0; m < p.M; ++m) {
    float* c = p.C + m * p.ldc;
    float* z = p.ep.preact() ? p.ep.preact() + m * p.ep.ldz() : nullptr;
    for (index_t n = 0; n < p.N; ++n) {
      float acc = 0.0f;
      for (index_t k = 0; k < p.K; ++k) {
        float a = p.trans_a ? p.A[k * p.lda + m] : p.A[m * p.lda + k];
        float b = p.trans_b ? p.B[n * p.ldb + k] : p.B[k * p.ldb + n];
        if (p.bf16) {
          a = round_to_bf16(a);
          b = round_to_bf16(b);
        }
        acc += a * b;
      }
      float v = p.alpha * acc;
      if (p.beta != 0.0f) v += p.beta * c[n];
      if (p.ep.bias()) v += p.ep.bias()[n];
      if (z) z[n] = v;
      c[n] = act_forward(p.ep.act(), v, p.ep.act_param());
    }
    if (p.ep.weights()) descend_rows(p.ep.weights() + m * p.ep.sgd.ldw, p.ep.sgd.ldw, c, p.ldc, 1, p.N, p.ep.sgd.lr);
  }
}

namespace {

// Whether B's micro-panels are packed: always when B must be transposed, and when
// more than one block of rows reads them (then a contiguous copy is worth making),
// and always for the bfloat16 GEMM, whose packing rounds the operands.
// Within one block a panel read in place stays in L1 between row panels, unless
// rows of B lie an even number of cache lines apart: then they share few L1 sets
// and evict each other, and a packed copy pays once a few row panels reuse it.
inline bool packs_b(const Problem& p) {
  return p.bf16 || p.trans_b || p.M > kMC || (p.M > 2 * kMR && p.ldb % 32 == 0);
}

// Rows [m0, m0+mc) and K range [k0, k0+kc) of op(A), as `panels` row panels.
void pack_a_block(float* dst, const Problem& p, index_t m0, index_t mc, index_t panels, index_t k0,
                  index_t kc) {
  for (index_t t = 0; t < panels; ++t) {
    const index_t r0 = t * mc / panels, h = (t + 1) * mc / panels - r0;
    if (p.trans_a)
      pack_copy(dst + r0 * kc, h, p.A + k0 * p.lda + m0 + r0, p.lda, h, kc, p.bf16);
    else
      pack_transpose(dst + r0 * kc, h, p.A + (m0 + r0) * p.lda + k0, p.lda, h, kc, p.bf16);
  }
}

// Columns [j0, j0+w) (w <= kNR) and K range [k0, k0+kc) of op(B), zero-padded to kNR.
void pack_b_panel(float* dst, const Problem& p, index_t j0, index_t w, index_t k0, index_t kc) {
  if (p.trans_b)
    pack_transpose(dst, kNR, p.B + j0 * p.ldb + k0, p.ldb, w, kc, p.bf16);
  else
    pack_copy(dst, kNR, p.B + k0 * p.ldb + j0, p.ldb, w, kc, p.bf16);
}

void packed(const Problem& p) {
  if (p.bf16 && (kHasAmx || p.amx) && !p.pairs) {
    packed_amx(p);
    return;
  }
  if (p.bf16 && (kHasDpbf16 || p.pairs)) {
    packed_dpbf16(p);
    return;
  }
  const index_t kblocks = ceil_div(p.K, kKC), kc_max = ceil_div(p.K, kblocks);
  const index_t mblocks = ceil_div(p.M, kMC), mc_max = ceil_div(p.M, mblocks);
  const index_t nblocks = ceil_div(p.N, kNC);
  const index_t nc_max = ceil_div(ceil_div(p.N, nblocks), kNR) * kNR;
  const bool pack_b = packs_b(p);
  // With a single block of rows, each B panel is packed right before the row panels
  // use it, while it is hot; otherwise the whole kc×nc block is packed once and
  // reused by every block of rows.
  const bool panelwise = mblocks == 1;
  const index_t a_size = ceil_div(mc_max * kc_max + kPackSlack, 16) * 16;
  const index_t b_size = kc_max * (pack_b && !panelwise ? nc_max : kNR);
  float* const ws = tls_workspace.get(static_cast<size_t>(a_size + b_size));
  if (!ws) {  // out of memory
    unpacked(p);
    return;
  }
  float* const abuf = ws;
  float* const bbuf = ws + a_size;

  TileEpilogue e = tile_epilogue(p);
  PackedBlock blk;
  blk.a = abuf;
  blk.ldc = p.ldc;
  // C need not be stored when it only feeds the SGD step and no later K block reads it.
  blk.scratch_c = !p.ep.keep_c() && kblocks == 1;

  for (index_t jb = 0; jb < nblocks; ++jb) {
    const index_t n0 = jb * p.N / nblocks, nc = (jb + 1) * p.N / nblocks - n0;
    const index_t q_count = ceil_div(nc, kNR);
    for (index_t kb = 0; kb < kblocks; ++kb) {
      const index_t k0 = kb * p.K / kblocks, kc = (kb + 1) * p.K / kblocks - k0;
      e.beta = kb == 0 ? p.beta : 1.0f;
      e.read_c = kb > 0 || p.beta != 0.0f;
      e.final = kb == kblocks - 1;
      blk.epi = e;
      blk.kc = kc;
      blk.rows_outer = kc < 64;
      const GemmEpilogue ep = e.final ? p.ep : GemmEpilogue::store();
      if (panelwise) {
        blk.mc = p.M;
        blk.panels = ceil_div(p.M, kMR);
        pack_a_block(abuf, p, 0, p.M, blk.panels, k0, kc);
        for (index_t q = 0; q < q_count; ++q) {
          const index_t j0 = n0 + q * kNR, w = min_i(kNR, n0 + nc - j0);
          if (pack_b || w < kNR) {
            pack_b_panel(bbuf, p, j0, w, k0, kc);
            blk.b = bbuf;
            blk.b_ks = kNR;
          } else {
            blk.b = p.B + k0 * p.ldb + j0;
            blk.b_ks = p.ldb;
          }
          blk.b_ps = 0;
          blk.nc = w;
          blk.c = p.C + j0;
          blk.ep = ep.at(0, j0);
          macro_kernel(blk);
        }
        continue;
      }
      for (index_t q = 0; q < q_count; ++q) {
        const index_t j0 = n0 + q * kNR;
        pack_b_panel(bbuf + q * kc * kNR, p, j0, min_i(kNR, n0 + nc - j0), k0, kc);
      }
      blk.b = bbuf;
      blk.b_ks = kNR;
      blk.b_ps = kc * kNR;
      blk.nc = nc;
      for (index_t ib = 0; ib < mblocks; ++ib) {
        const index_t m0 = ib * p.M / mblocks, mc = (ib + 1) * p.M / mblocks - m0;
        blk.mc = mc;
        blk.panels = ceil_div(mc, kMR);
        pack_a_block(abuf, p, m0, mc, blk.panels, k0, kc);
        blk.c = p.C + m0 * p.ldc + n0;
        blk.ep = ep.at(m0, n0);
        macro_kernel(blk);
      }
    }
  }
}

// The dot path wins while few rows of A reuse each row of B (no transposing pack
// to amortise), and when C is too narrow to fill the kNR columns of a tile. (Not for
// the bfloat16 GEMM: its operands are rounded where they are packed.)
inline bool use_dot(const Problem& p) {
  return !p.bf16 && p.trans_b && !p.trans_a && (p.M <= 48 || p.N < kNR);
}

// The dot path loads every row of A once per kDotN rows of B. A row that does not
// start on a cache line (NumPy aligns arrays to 16 bytes; a row of K floats is
// aligned only when K·4 is a multiple of 64) makes every vector load of it span
// two lines, which costs a second load: on AVX-512 cores 1.2-1.3x the time of a
// 20x784x512 product. When B has enough rows to amortise it, A is first copied to
// the thread's workspace with aligned rows (M·K floats, against M·K·N/kDotN loads
// saved), if A is small (the dot path also serves tall A with narrow C, which is
// left as it is rather than copied whole). The values, and the order in which K is
// summed, are the same, so the result is bitwise that of the unaligned operands.
constexpr std::uintptr_t kLine = 64;
constexpr index_t kLineFloats = static_cast<index_t>(kLine / sizeof(float));
constexpr index_t kMaxAlignedCopy = index_t(1) << 18;  // floats (1 MB)

inline bool rows_aligned(const float* a, index_t ld, index_t rows) {
  return reinterpret_cast<std::uintptr_t>(a) % kLine == 0 && (rows == 1 || ld % kLineFloats == 0);
}

void run_dot(const Problem& p) {
  const index_t ld = ceil_div(p.K, kLineFloats) * kLineFloats;
  if (p.N >= 4 * kDotN && p.K >= kW && p.M * ld <= kMaxAlignedCopy && !rows_aligned(p.A, p.lda, p.M)) {
    float* const a = tls_workspace.get(static_cast<size_t>(p.M * ld));
    if (a) {
      for (index_t m = 0; m < p.M; ++m) std::memcpy(a + m * ld, p.A + m * p.lda, sizeof(float) * p.K);
      Problem q = p;
      q.A = a;
      q.lda = ld;
      dot_nt(q);
      return;
    }
  }
  dot_nt(p);
}

void run(const Problem& p, bool dot) {
  if (dot)
    run_dot(p);
  else
    packed(p);
}

// The block of C in rows [m0, m1) and columns [n0, n1), operands offset to match.
Problem slice(const Problem& p, index_t m0, index_t m1, index_t n0, index_t n1) {
  Problem s = p;
  s.C = p.C + m0 * p.ldc + n0;
  s.A = p.trans_a ? p.A + m0 : p.A + m0 * p.lda;
  s.B = p.trans_b ? p.B + n0 * p.ldb : p.B + n0;
  s.ep = p.ep.at(m0, n0);
  s.M = m1 - m0;
  s.N = n1 - n0;
  return s;
}

// Whether two threads split K rather than C: when C is a single block of rows with
// a plain epilogue and K is exactly two cache blocks. Each thread then reads the
// same amount of B as a split of the columns would, but its own rows of B: for
// dX = dZ·W of a Linear layer those are the rows of W (the layer's outputs) whose
// forward products and weight gradient the same thread computes, so they stay in
// its core's cache instead of moving between the cores. The first thread forms
// alpha·(the first K block's product) in C and the second alpha·(the second's) in
// its workspace; their sum is what the packed path forms on one thread (it stores
// the first block into C and adds the second block to it, and a float sum of two
// terms does not depend on their order), so the result is bitwise the same.
inline bool split_k(const Problem& p, bool dot, int nt) {
  return nt == 2 && !dot && p.M <= kMC && (p.K + kKC - 1) / kKC == 2 && p.beta == 0.0f && p.ep.plain();
}

// The product over K from k0 on: op(A)'s columns and op(B)'s rows from k0.
Problem k_tail(const Problem& p, index_t k0) {
  Problem q = p;
  q.K = p.K - k0;
  q.A = p.trans_a ? p.A + k0 * p.lda : p.A + k0;
  q.B = p.trans_b ? p.B + k0 : p.B + k0 * p.ldb;
  return q;
}

// C = alpha·op(A)·op(B) on two threads, one K block each (see split_k).
void gemm_split_k(const Problem& p) {
  const index_t k_half = p.K / 2;  // the packed path's block boundary: kb·K / kblocks
  float* partial = nullptr;
  bool ok = true;
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t == 1) {
      partial = tls_partial.get(static_cast<size_t>(p.M * p.N));
      ok = partial != nullptr;
    }
#pragma omp barrier
    if (t == 0) {
      Problem q = p;
      q.K = k_half;
      packed(q);
    } else if (ok) {
      Problem q = k_tail(p, k_half);
      q.C = partial;
      q.ldc = p.N;
      packed(q);
    }
#pragma omp barrier
    if (ok) {  // C += partial, half of the rows each
      const index_t m0 = t * p.M / 2, m1 = (t + 1) * p.M / 2;
      for (index_t m = m0; m < m1; ++m) {
        float* c = p.C + m * p.ldc;
        const float* s = partial + m * p.N;
        index_t n = 0;
        for (; n + kW <= p.N; n += kW) vstore(c + n, vadd(vload(s + n), vload(c + n)));
        for (; n < p.N; ++n) c[n] = s[n] + c[n];
      }
    }
  }
  if (!ok) {  // no memory for the partial product: the second block on this thread, added to C
    Problem q = k_tail(p, k_half);
    q.beta = 1.0f;
    packed(q);
  }
}

// C[M,N] = ep(alpha·op(A)·op(B) + beta·C), op(A) and op(B) rounded to bfloat16 when bf16
void gemm_any(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
              index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
              const GemmEpilogue& ep, bool bf16, bool pairs = false, bool amx = false) {
  if (M <= 0 || N <= 0) return;
  Problem p;
  p.C = C;
  p.ldc = ldc;
  p.A = A;
  p.lda = lda;
  p.B = B;
  p.ldb = ldb;
  p.M = M;
  p.N = N;
  p.K = K;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.alpha = alpha;
  p.beta = beta;
  p.ep = ep;
  p.bf16 = bf16;
  p.pairs = pairs;
  p.amx = amx;
  if (K <= 0) {
    no_product(p);
    return;
  }
  const bool dot = use_dot(p);
  // Threads split C into independent blocks, in whole register tiles.
  const index_t mu = dot ? ceil_div(M, kDotM) : ceil_div(M, kMR);
  const index_t nu = dot ? ceil_div(N, kDotN) : ceil_div(N, kNR);
  // Work in multiply-adds, plus the epilogue's share (about 8 per element of C,
  // which matters when K is short); in double, so that huge shapes cannot overflow.
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K + 8);
  // The dot path packs nothing, so a second thread pays from half the work.
  int nt = threads_for(static_cast<index_t>(work < 1e18 ? work : 1e18), index_t(1) << (dot ? 17 : 18));
  // Split the rows when K is short (then storing C is most of the work, and each
  // thread streams whole rows) or when there are more of them; otherwise split the
  // columns, so that no part of B is packed twice.
  const bool split_n = K < 64 ? mu < nt : nu >= nt && (nu >= mu || nu >= 4 * nt);
  const index_t units = split_n ? nu : mu;
  if (nt > units) nt = static_cast<int>(units);
  if (nt <= 1) {
    run(p, dot);
    return;
  }
  if (split_k(p, dot, nt)) {
    gemm_split_k(p);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), count = omp_get_num_threads();
    const index_t u0 = t * units / count, u1 = (t + 1) * units / count;
    if (split_n) {
      const index_t unit = dot ? kDotN : kNR;
      const index_t n0 = min_i(u0 * unit, N), n1 = min_i(u1 * unit, N);
      if (n1 > n0) run(slice(p, 0, M, n0, n1), dot);
    } else if (dot) {
      const index_t m0 = min_i(u0 * kDotM, M), m1 = min_i(u1 * kDotM, M);
      if (m1 > m0) run(slice(p, m0, m1, 0, N), dot);
    } else {
      // Equal numbers of rows: the packed path evens out its row panels within a
      // slice, so 64 rows split 32/32 rather than 28/36 in whole 14-row tiles.
      const index_t m0 = t * M / count, m1 = (t + 1) * M / count;
      if (m1 > m0) run(slice(p, m0, m1, 0, N), dot);
    }
  }
}

void gemm(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
          index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
          const GemmEpilogue& ep) {
  gemm_any(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep, false);
}

void gemm_bf16(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
               index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
               const GemmEpilogue& ep) {
  gemm_any(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep, true);
}

void gemm_bf16_pairs(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
                     index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
                     const GemmEpilogue& ep) {
  gemm_any(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep, true, true);
}

void gemm_bf16_amx(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb,
                   index_t M, index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta,
                   const GemmEpilogue& ep) {
  gemm_any(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep, true, false, true);
}

}  // namespace
}  // namespace gemm_impl

void fill_gemm(KernelTable& t) {
  t.gemm = gemm_impl::gemm;
  t.gemm_bf16 = gemm_impl::gemm_bf16;
  t.gemm_bf16_pairs = gemm_impl::gemm_bf16_pairs;
  t.gemm_bf16_amx = gemm_impl::gemm_bf16_amx;
  t.bf16_path = gemm_impl::kHasAmx       ? "amx (AMX-BF16 tiles, TDPBF16PS)"
                : gemm_impl::kHasDpbf16 ? "avx512bf16 (vdpbf16ps)"
                                        : "float32 FMA on bfloat16-rounded operands";
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
