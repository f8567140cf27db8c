// The GEMM of one instruction set: declarations shared by its sources.
//   driver.cpp   entry point: special cases, path choice, threads, cache blocking
//   pack.cpp     packing of A and B panels (copies and register transposes)
//   ukernel.cpp  register-tiled outer-product micro-kernels over packed panels
//   dot.cpp      the small-batch X·Wᵀ path: dot-product tiles, no packing
//   bf16_dp.cpp  the bfloat16 GEMM on AVX512-BF16 (vdpbf16ps): pair packing and its kernel
//   bf16_amx.cpp the bfloat16 GEMM on AMX tiles (TDPBF16PS)
//   pairs.h      helpers of the two pair-packed paths
// Like every per-ISA source, everything lives in namespace fastmlp::cpu::<isa>.
// Nothing here throws; FASTMLP_NOTHROW says so to the compiler, so that the
// OpenMP regions calling these functions need no exception-handling code.
#pragma once

#include "common/bf16.h"
#include "cpu/gemm/simd.h"

#define FASTMLP_NOTHROW __attribute__((nothrow))

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {

// Register tile of the outer-product kernels: up to kMR rows of C by kNR = kNV·kW
// columns (ukernel_<isa>_<kMR>x<kNR>); dot-product tiles are up to kDotM rows of
// X by kDotN rows of W. Cache blocks: a kc×kNR panel of B stays in L1, an mc×kc
// block of A in L2, a kc×nc block of B in L3.
#if defined(__AVX512F__)
constexpr int kMR = 14, kNV = 2;  // 14x32: 28 accumulators + 2 B vectors + 1 broadcast
constexpr int kDotM = 4, kDotN = 4;
constexpr index_t kKC = 256, kMC = 168, kNC = 2048;
#elif defined(__AVX2__)
constexpr int kMR = 6, kNV = 2;  // 6x16: 12 accumulators + 2 B vectors + 1 broadcast
constexpr int kDotM = 3, kDotN = 4;
constexpr index_t kKC = 384, kMC = 144, kNC = 2048;
#else
constexpr int kMR = 4, kNV = 2;  // 4x8 in SSE2 registers
constexpr int kDotM = 2, kDotN = 4;
constexpr index_t kKC = 256, kMC = 64, kNC = 1024;
#endif
constexpr int kNR = kNV * kW;

// How the activation of the epilogue is applied: in registers before the store,
// or as a pass over the stored tile while it is still in L1.
enum class ActMode { None, ReLU, Leaky, Pass };

// What happens to a tile of C once a K block has been multiplied out:
//   z = alpha·acc (+ beta·C when read_c)
//   on the last K block (final): z += bias; preact = z; C = act(z)
// Earlier K blocks store z into C, which later blocks read back with beta = 1.
struct TileEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;
  bool read_c = false;
  bool final = true;
  ActMode mode = ActMode::None;
  Act act = Act::Identity;
  float act_param = 0.0f;
};

// One GEMM (or one thread's share of it), every pointer at the share's origin:
// C[M,N] = ep(alpha·op(A)·op(B) + beta·C).
struct Problem {
  float* C;
  index_t ldc;
  const float* A;
  index_t lda;
  const float* B;
  index_t ldb;
  index_t M, N, K;
  bool trans_a, trans_b;
  float alpha, beta;
  GemmEpilogue ep;  // at the share's origin
  bool bf16 = false;  // op(A) and op(B) rounded to bfloat16 as they are packed (gemm_bf16)
  bool pairs = false;  // with bf16: the pair-packed path of bf16_dp.cpp even without AVX512-BF16 (tests)
  bool amx = false;    // with bf16: the AMX path of bf16_amx.cpp even without AMX (tests)
};

// ---- pack.cpp ------------------------------------------------------------------
// A panel narrower than a vector (ldd < kW) is written with full-width stores, each
// row's overlapping the start of the next one, which the next store then fixes:
// masked stores cost several times more on some cores (AMD Zen). The kW - ldd
// floats after the last row of dst are therefore overwritten (kPackSlack covers it).
constexpr index_t kPackSlack = kW;
// dst[k·ldd + i] = src[i·lds + k] for i < rows, k < cols; zeros for rows <= i < ldd.
// With bf16, each value is rounded to bfloat16 (kept as a float32) on the way.
FASTMLP_NOTHROW void pack_transpose(float* dst, index_t ldd, const float* src, index_t lds,
                                    index_t rows, index_t cols, bool bf16 = false);
// dst[k·ldd + j] = src[k·lds + j] for j < width, k < rows_k; zeros for width <= j < ldd.
FASTMLP_NOTHROW void pack_copy(float* dst, index_t ldd, const float* src, index_t lds,
                               index_t width, index_t rows_k, bool bf16 = false);

// ---- ukernel.cpp -----------------------------------------------------------------
// One mc×nc block of C for one K block of length kc. A is packed in `panels` row
// panels of balanced heights (<= kMR): panel p covers rows [p·mc/panels,
// (p+1)·mc/panels) and holds, for each k, its rows contiguously. B is read in
// micro-panels of kNR columns: panel q starts at b + q·b_ps and its row k at
// + k·b_ks (a partial last panel is zero-padded, or nc covers a single panel).
struct PackedBlock {
  index_t mc, nc, kc;
  const float* a;
  index_t panels;
  const float* b;
  index_t b_ks, b_ps;
  float* c;
  index_t ldc;
  GemmEpilogue ep;    // at the block origin; Store on every K block but the last
  bool scratch_c;     // with an SGD step: tiles go to a scratch tile, not to c (GemmEpilogue::SgdStep::keep_c)
  TileEpilogue epi;
  bool rows_outer;  // loop over row panels outside (short K: stream C row-wise)
};
FASTMLP_NOTHROW void macro_kernel(const PackedBlock& blk);

// ---- driver.cpp -----------------------------------------------------------------
// C = ep(alpha·op(A)·op(B) + beta·C) in plain loops (op(A), op(B) rounded to bfloat16 with
// p.bf16), for when no packing workspace can be allocated.
FASTMLP_NOTHROW void unpacked(const Problem& p);

// ---- dot.cpp --------------------------------------------------------------------
// p.trans_b && !p.trans_a: C = act(alpha·A·Bᵀ + beta·C + bias) by dot products of
// rows of A with rows of B, which are both contiguous along K (no packing).
FASTMLP_NOTHROW void dot_nt(const Problem& p);

// ---- bf16_dp.cpp ------------------------------------------------------------------
// Whether this instruction set has a native bfloat16 product (AVX512-BF16); then the
// bfloat16 GEMM's packed path is packed_dpbf16, else the float32 kernels run on
// operands rounded to bfloat16 in the packing (the same products, exact in float32).
#if defined(__AVX512BF16__)
constexpr bool kHasDpbf16 = true;
#else
constexpr bool kHasDpbf16 = false;
#endif
// p.bf16: C = ep(alpha·op(A)·op(B) + beta·C) with vdpbf16ps (an emulation of it without
// AVX512-BF16, for KernelTable::gemm_bf16_pairs).
FASTMLP_NOTHROW void packed_dpbf16(const Problem& p);

// ---- bf16_amx.cpp -------------------------------------------------------------------
// Whether this instruction set has AMX-BF16 tiles; then the bfloat16 GEMM's packed path is
// packed_amx (the kernel set is chosen only where the OS grants the tile state).
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
constexpr bool kHasAmx = true;
#else
constexpr bool kHasAmx = false;
#endif
// p.bf16: C = ep(alpha·op(A)·op(B) + beta·C) on AMX tiles (emulated without AMX, for
// KernelTable::gemm_bf16_amx).
FASTMLP_NOTHROW void packed_amx(const Problem& p);

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
