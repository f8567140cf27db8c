// FP32 GEMM on CUDA cores: shared-memory tiles, warp tiles and per-thread
// register micro-tiles (see gemm_impl.cuh for the tile pipeline).
//
// A block of WARPS_M x WARPS_N warps computes a BM x BN tile of C. Each warp owns a
// WM x WN sub-tile; its 32 lanes form a 4 x 8 grid, and each lane owns RM x RN
// blocks of 4 x 4 results spaced 16 rows / 32 columns apart, so that a warp's
// float4 reads of a k-slice of the A tile touch 4 distinct addresses (64 bytes,
// broadcast to the other lanes) and of the B tile 8 distinct addresses (128
// contiguous bytes): no bank conflicts. Both tiles are stored k-major in shared
// memory (S[k][m], S[k][n]); each k step is an outer product of TM values of A and
// TN values of B into TM x TN accumulators.
//
// Variants (gemm_tile_shape): 128x128x8 with 8 warps and 8x8 per thread (large
// problems), 64x64x16 with 4 warps and 8x4 (medium), 16x64x16 with 2 warps and
// 4x4 (batches of up to 32 rows).
#include "cuda/gemm_impl.cuh"

namespace fastmlp::cuda::gemm_detail {
namespace {

template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, int MIN_BLOCKS, bool TA, bool TB>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32, MIN_BLOCKS) gemm_simt_kernel(const GemmArgs g) {
  constexpr int NT = WARPS_M * WARPS_N * 32;
  constexpr int LANES_M = 4, LANES_N = 8;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  constexpr int RM = WM / (LANES_M * 4), RN = WN / (LANES_N * 4);
  static_assert(BM % WARPS_M == 0 && BN % WARPS_N == 0, "warps must tile the block");
  static_assert(RM >= 1 && RN >= 1 && WM == RM * LANES_M * 4 && WN == RN * LANES_N * 4,
                "lanes must tile the warp in 4x4 blocks");
  constexpr int TM = RM * 4, TN = RN * 4;
  constexpr int SA = BM + 4, SB = BN + 4;  // shared row strides (k-major)

  // Two buffers of each tile; the epilogue reuses the space as its stage.
  constexpr int kTileFloats = 2 * BK * SA + 2 * BK * SB;
  constexpr int SR = WARPS_M * 16, SC = WARPS_N * 32;  // stage: one 4x4 block per thread
  static_assert(SR * SC <= kTileFloats, "the epilogue stage must fit in the tile buffers");
  __shared__ __align__(16) float smem[kTileFloats];
  float* const As = smem;                 // [2][BK][SA]
  float* const Bs = smem + 2 * BK * SA;   // [2][BK][SB]

  index_t pm, pn;
  tile_coords((g.M + BM - 1) / BM, (g.N + BN - 1) / BN, pm, pn);
  const index_t m0 = pm * BM, n0 = pn * BN;
  const int split = blockIdx.y;
  const index_t kb = static_cast<index_t>(split) * g.k_chunk;
  const index_t ke = kb + g.k_chunk < g.K ? kb + g.k_chunk : g.K;
  const index_t ntiles = ke > kb ? (ke - kb + BK - 1) / BK : 0;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row0 = (warp / WARPS_N) * WM + (lane / LANES_N) * 4;
  const int col0 = (warp % WARPS_N) * WN + (lane % LANES_N) * 4;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  if (ntiles > 0) {
    TileLoad<BM, BK, NT, !TA> la;  // op(A) tile: rows m, k contiguous unless A is transposed
    TileLoad<BN, BK, NT, TB> lb;   // op(B) tile: rows n, k contiguous when B is transposed
    la.init(g.lda, m0, g.M);
    lb.init(g.ldb, n0, g.N);
    la.load(g.A, g.lda, kb, ke, g.vec_a);
    lb.load(g.B, g.ldb, kb, ke, g.vec_b);
    la.template store<Smem::KMajor, SA, false>(As);
    lb.template store<Smem::KMajor, SB, false>(Bs);
    __syncthreads();

    for (index_t t = 0; t < ntiles; ++t) {
      const int cur = static_cast<int>(t & 1);
      const bool more = t + 1 < ntiles;
      if (more) {  // next tile into registers while this one is multiplied
        const index_t k0 = kb + (t + 1) * BK;
        la.load(g.A, g.lda, k0, ke, g.vec_a);
        lb.load(g.B, g.ldb, k0, ke, g.vec_b);
      }
      const float* a_s = As + cur * BK * SA;
      const float* b_s = Bs + cur * BK * SB;
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float a[TM], b[TN];
#pragma unroll
        for (int rm = 0; rm < RM; ++rm) {
          const float4 v = *reinterpret_cast<const float4*>(a_s + k * SA + row0 + rm * LANES_M * 4);
          a[rm * 4 + 0] = v.x;
          a[rm * 4 + 1] = v.y;
          a[rm * 4 + 2] = v.z;
          a[rm * 4 + 3] = v.w;
        }
#pragma unroll
        for (int rn = 0; rn < RN; ++rn) {
          const float4 v = *reinterpret_cast<const float4*>(b_s + k * SB + col0 + rn * LANES_N * 4);
          b[rn * 4 + 0] = v.x;
          b[rn * 4 + 1] = v.y;
          b[rn * 4 + 2] = v.z;
          b[rn * 4 + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      if (more) {
        // The other buffer was last read in step t-1, which every thread finished
        // before the barrier that closed it.
        la.template store<Smem::KMajor, SA, false>(As + (cur ^ 1) * BK * SA);
        lb.template store<Smem::KMajor, SB, false>(Bs + (cur ^ 1) * BK * SB);
      }
      __syncthreads();
    }
  }

  // Epilogue in RM x RN rounds: round (rm, rn) stages every thread's 4x4 block
  // (rm, rn) as stage[wm*16 + lm*4 + i][wn*32 + ln*4 + j], which belongs at tile row
  // wm*WM + rm*16 + lm*4 + i and tile column wn*WN + rn*32 + ln*4 + j.
  const int srow = (warp / WARPS_N) * 16 + (lane / LANES_N) * 4;
  const int scol = (warp % WARPS_N) * 32 + (lane % LANES_N) * 4;
  __syncthreads();  // the last K step's reads of the tile buffers are done
#pragma unroll
  for (int rm = 0; rm < RM; ++rm) {
#pragma unroll
    for (int rn = 0; rn < RN; ++rn) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        *reinterpret_cast<float4*>(smem + (srow + i) * SC + scol) =
            make_float4(acc[rm * 4 + i][rn * 4 + 0], acc[rm * 4 + i][rn * 4 + 1], acc[rm * 4 + i][rn * 4 + 2],
                        acc[rm * 4 + i][rn * 4 + 3]);
      __syncthreads();
      store_stage<SR, SC, SC, NT>(
          g, smem, m0, n0, split, [&](int sr) { return (sr / 16) * WM + rm * 16 + sr % 16; },
          [&](int sc) { return (sc / 32) * WN + rn * 32 + sc % 32; });
      __syncthreads();  // the stage is read before the next round overwrites it
    }
  }
}

template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, int MIN_BLOCKS, bool TA, bool TB>
void launch(const GemmArgs& g, int splits, cudaStream_t stream) {
  const index_t tiles = ((g.M + BM - 1) / BM) * ((g.N + BN - 1) / BN);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits));
  gemm_simt_kernel<BM, BN, BK, WARPS_M, WARPS_N, MIN_BLOCKS, TA, TB>
      <<<grid, WARPS_M * WARPS_N * 32, 0, stream>>>(g);
  FASTMLP_CUDA_CHECK_LAUNCH("gemm_simt_kernel");
}

template <bool TA, bool TB>
void launch_variant(GemmAlgo algo, const GemmArgs& g, int splits, cudaStream_t stream) {
  switch (algo) {
    case GemmAlgo::Simt128x128: launch<128, 128, 8, 4, 2, 2, TA, TB>(g, splits, stream); break;
    case GemmAlgo::Simt64x64: launch<64, 64, 16, 2, 2, 4, TA, TB>(g, splits, stream); break;
    case GemmAlgo::Simt16x64: launch<16, 64, 16, 1, 2, 8, TA, TB>(g, splits, stream); break;
    default: throw std::logic_error("launch_simt: not a SIMT GEMM variant");
  }
}

}  // namespace

void launch_simt(GemmAlgo algo, bool trans_a, bool trans_b, const GemmArgs& g, int splits, cudaStream_t stream) {
  if (trans_a) {
    if (trans_b) launch_variant<true, true>(algo, g, splits, stream);
    else launch_variant<true, false>(algo, g, splits, stream);
  } else {
    if (trans_b) launch_variant<false, true>(algo, g, splits, stream);
    else launch_variant<false, false>(algo, g, splits, stream);
  }
}

}  // namespace fastmlp::cuda::gemm_detail
