// The bfloat16 GEMM on AMX tiles (AMX-TILE + AMX-BF16): TDPBF16PS multiplies a 16×32 bfloat16
// tile of A by a 32×16 one of B into a 16×16 float32 tile, 16 times the products of one
// vdpbf16ps. Register block: 32×32 of C in four accumulator tiles, two tiles of A (rows 0-15,
// 16-31) and two of B (columns 0-15, 16-31), K in steps of 32 (16 pairs).
// Packing (the operands rounded to bfloat16 as they are packed, common/bf16.h):
//   A panel: 32 rows (zero rows past the block), each row its K pairs contiguous, kcp16 of
//            them (kcp rounded up to 16, zero pairs past K): the layout of an A tile.
//   B panel: 32 columns; for each pair t, the 32 columns' pairs contiguous (the pair-packed
//            ("VNNI") layout a B tile reads), kcp16 rows.
// The tiles are stored to a 32×32 scratch tile and the float32 epilogue (epilogue.h) runs
// from there. Loops as the float32 packed path: jc (nc columns), pc (K blocks of kKC pairs,
// pack B), ic (mc rows, pack A), then the 32×32 blocks.
//
// The kernel set built with -mamx-tile -mamx-bf16 runs this as its bfloat16 GEMM, once the
// process has Linux's permission to use the tile state (dispatch.cpp asks for it). Other sets
// compile it with the tile instructions emulated in plain loops, reachable only through
// KernelTable::gemm_bf16_amx, so that the packing, blocking and epilogue are tested on any CPU.
// TDPBF16PS treats bfloat16 denormals as zero, as vdpbf16ps does.
#include "cpu/gemm/pairs.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <immintrin.h>
#endif

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

constexpr index_t kTile = 16;       // rows of a tile; pairs (and float32 columns) per tile row
constexpr index_t kBlock = 32;      // rows and columns of C per register block
constexpr index_t kKPairs = kKC;    // pairs per K block

// Rows [m0, m0+h) of op(A) (h <= 32), K range [k0, k0+kc): dst[i·kcp16 + t], zero-padded.
void pack_a_rows(std::uint32_t* dst, const Problem& p, index_t m0, index_t h, index_t k0, index_t kc,
                 index_t kcp16) {
  for (index_t i = 0; i < kBlock; ++i) {
    std::uint32_t* d = dst + i * kcp16;
    index_t t = 0;
    if (i < h) {
      for (; 2 * t + 1 < kc; ++t) d[t] = pair_of(a_at(p, m0 + i, k0 + 2 * t), a_at(p, m0 + i, k0 + 2 * t + 1));
      if (2 * t < kc) {
        d[t] = pair_of(a_at(p, m0 + i, k0 + 2 * t), 0.0f);
        ++t;
      }
    }
    for (; t < kcp16; ++t) d[t] = 0;
  }
}

// Columns [j0, j0+w) of op(B) (w <= 32), K range [k0, k0+kc): dst[t·32 + j], zero-padded.
void pack_b_cols(std::uint32_t* dst, const Problem& p, index_t j0, index_t w, index_t k0, index_t kc,
                 index_t kcp16) {
  for (index_t t = 0; t < kcp16; ++t) {
    std::uint32_t* d = dst + t * kBlock;
    const index_t k = k0 + 2 * t;
    index_t j = 0;
    if (k < k0 + kc) {
      const bool odd_tail = k + 1 >= k0 + kc;
      for (; j < w; ++j) d[j] = pair_of(b_at(p, k, j0 + j), odd_tail ? 0.0f : b_at(p, k + 1, j0 + j));
    }
    for (; j < kBlock; ++j) d[j] = 0;
  }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)

// Palette 1: tiles 0-3 accumulate C, 4-5 hold A, 6-7 hold B; each 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

void release_tiles() { _tile_release(); }

// scratch[32×32] = Σ over kcp16 pairs of the A panel (rows of kcp16 pairs) times the B panel.
void block_32x32(index_t kcp16, const std::uint32_t* a, const std::uint32_t* b, float* scratch) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const index_t a_stride = kcp16 * 4, b_stride = kBlock * 4;
  for (index_t t = 0; t < kcp16; t += kTile) {
    _tile_loadd(4, a + t, a_stride);
    _tile_loadd(5, a + kTile * kcp16 + t, a_stride);
    _tile_loadd(6, b + t * kBlock, b_stride);
    _tile_loadd(7, b + t * kBlock + kTile, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, scratch, kBlock * 4);
  _tile_stored(1, scratch + kTile, kBlock * 4);
  _tile_stored(2, scratch + kTile * kBlock, kBlock * 4);
  _tile_stored(3, scratch + kTile * kBlock + kTile, kBlock * 4);
}

#else

void configure_tiles() {}
void release_tiles() {}

inline float high_half(std::uint32_t u) { return float_of(u & 0xFFFF0000u); }
inline float low_half(std::uint32_t u) { return float_of(u << 16); }

// The same block with the tile instructions emulated: each pair's high product, then its low
// one, added to the float32 accumulator (TDPBF16PS's definition).
void block_32x32(index_t kcp16, const std::uint32_t* a, const std::uint32_t* b, float* scratch) {
  for (index_t i = 0; i < kBlock; ++i) {
    float* s = scratch + i * kBlock;
    for (index_t j = 0; j < kBlock; ++j) s[j] = 0.0f;
    for (index_t t = 0; t < kcp16; ++t) {
      const std::uint32_t au = a[i * kcp16 + t];
      const std::uint32_t* bt = b + t * kBlock;
      for (index_t j = 0; j < kBlock; ++j) {
        s[j] += high_half(au) * high_half(bt[j]);
        s[j] += low_half(au) * low_half(bt[j]);
      }
    }
  }
}

#endif

// The float32 epilogue on rows [0, h) and columns [0, nv) of a 32×32 scratch block.
void epilogue_block(const float* scratch, index_t h, index_t nv, float* c, index_t ldc, float* z, index_t ldz,
                    const float* bias, const TileEpilogue& e) {
  for (index_t i = 0; i < h; ++i) {
    for (index_t c0 = 0; c0 < nv; c0 += kNR) {
      vf acc[kNV];
      for (int j = 0; j < kNV; ++j) acc[j] = vload(scratch + i * kBlock + c0 + j * kW);
      const int n = static_cast<int>(nv - c0 < kNR ? nv - c0 : kNR);
      store_row<kNV>(c + i * ldc + c0, z ? z + i * ldz + c0 : nullptr, bias ? bias + c0 : nullptr, acc, n, e);
    }
  }
  if (e.final && e.mode == ActMode::Pass) act_rows(c, ldc, h, nv, e.act, e.act_param);
}

}  // namespace

void packed_amx(const Problem& p) {
  static_assert(kBlock % kNR == 0, "a register block is whole micro-panels wide");
  const index_t pairs = ceil_div(p.K, 2);
  const index_t kblocks = ceil_div(pairs, kKPairs), kcp_max = ceil_div(pairs, kblocks);
  const index_t kcp16_max = ceil_div(kcp_max, kTile) * kTile;
  const index_t mblocks = ceil_div(p.M, kMC);
  const index_t nblocks = ceil_div(p.N, kNC);
  const index_t nc_max = ceil_div(ceil_div(p.N, nblocks), kBlock) * kBlock;
  const index_t mc_max = ceil_div(ceil_div(p.M, mblocks), kBlock) * kBlock;
  const index_t a_size = mc_max * kcp16_max, b_size = kcp16_max * nc_max;
  std::uint32_t* const ws = tls_pairs.get(static_cast<size_t>(a_size + b_size));
  if (!ws) {  // out of memory: the vdpbf16ps path needs less
    packed_dpbf16(p);
    return;
  }
  std::uint32_t* const abuf = ws;
  std::uint32_t* const bbuf = ws + a_size;
  alignas(64) float scratch[kBlock * kBlock];
  configure_tiles();

  TileEpilogue e = tile_epilogue(p);
  for (index_t jb = 0; jb < nblocks; ++jb) {
    const index_t n0 = jb * p.N / nblocks, nc = (jb + 1) * p.N / nblocks - n0;
    const index_t q_count = ceil_div(nc, kBlock);
    for (index_t kb = 0; kb < kblocks; ++kb) {
      const index_t t0 = kb * pairs / kblocks, t1 = (kb + 1) * pairs / kblocks;
      const index_t k0 = 2 * t0, kc = (2 * t1 < p.K ? 2 * t1 : p.K) - k0;
      const index_t kcp16 = ceil_div(t1 - t0, kTile) * kTile;
      e.beta = kb == 0 ? p.beta : 1.0f;
      e.read_c = kb > 0 || p.beta != 0.0f;
      e.final = kb == kblocks - 1;
      const GemmEpilogue ep = e.final ? p.ep : GemmEpilogue::store();
      for (index_t q = 0; q < q_count; ++q) {
        const index_t j0 = n0 + q * kBlock;
        pack_b_cols(bbuf + q * kcp16 * kBlock, p, j0, (kBlock < n0 + nc - j0 ? kBlock : n0 + nc - j0), k0, kc,
                    kcp16);
      }
      for (index_t ib = 0; ib < mblocks; ++ib) {
        const index_t m0 = ib * p.M / mblocks, mc = (ib + 1) * p.M / mblocks - m0;
        const index_t r_count = ceil_div(mc, kBlock);
        for (index_t r = 0; r < r_count; ++r) {
          const index_t i0 = r * kBlock;
          pack_a_rows(abuf + i0 * kcp16, p, m0 + i0, (kBlock < mc - i0 ? kBlock : mc - i0), k0, kc, kcp16);
        }
        const GemmEpilogue blk = ep.at(m0, n0);
        float* const w = blk.weights();
        float* const z = blk.preact();
        const float* const bias = blk.bias();
        for (index_t q = 0; q < q_count; ++q) {
          const index_t c0 = q * kBlock;
          const index_t nv = nc - c0 < kBlock ? nc - c0 : kBlock;
          for (index_t r = 0; r < r_count; ++r) {
            const index_t i0 = r * kBlock;
            const index_t h = mc - i0 < kBlock ? mc - i0 : kBlock;
            block_32x32(kcp16, abuf + i0 * kcp16, bbuf + q * kcp16 * kBlock, scratch);
            float* const c = p.C + (m0 + i0) * p.ldc + n0 + c0;
            epilogue_block(scratch, h, nv, c, p.ldc, z ? z + i0 * blk.ldz() + c0 : nullptr, blk.ldz(),
                           bias ? bias + c0 : nullptr, e);
            if (w) descend_rows(w + i0 * blk.sgd.ldw + c0, blk.sgd.ldw, c, p.ldc, h, nv, blk.sgd.lr);
          }
        }
      }
    }
  }
  release_tiles();
}

}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
