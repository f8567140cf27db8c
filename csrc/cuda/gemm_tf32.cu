// GEMM on tensor cores with TF32 inputs (sm_80+): mma.sync.m16n8k8 through inline
// PTX, FP32 accumulation. Operands are rounded to TF32 (10-bit mantissa, round to
// nearest) as they are stored to shared memory, so results differ from FP32 by
// about 1e-3 relative to Σ_k |a_k·b_k|; the path runs only when asked (allow_tf32).
//
// A block of 8 warps (2 x 4) computes a 128 x 128 tile of C, 16 values of k at a
// time (tile pipeline in gemm_impl.cuh); each warp owns 64 x 32 results as 4 x 4
// mma tiles of 16 x 8. Per mma, lane l (group g = l/4, t = l%4) holds
//   A (16x8, row-major): a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B (8x8,  k by n):    b0 = B[t][g], b1 = B[t+4][g]
//   C (16x8):            c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1].
// Each operand tile is stored in whichever shared layout its global layout fills
// with float4 stores: S[r][k] with row stride 20 when k is contiguous in memory,
// S[k][r] with row stride 136 otherwise. With those strides the fragment reads
// above (g over 8 rows, t over 4 k) fall in 32 distinct banks in both layouts.
#include "cuda/gemm_impl.cuh"

namespace fastmlp::cuda::gemm_detail {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 16, kThreads = 256;
constexpr int kWarpsN = 4;                 // 2 x 4 warps
constexpr int kWarpM = 64, kWarpN = 32;    // warp tile
constexpr int kMI = kWarpM / 16, kNI = kWarpN / 8;

template <bool KCONTIG, int R>
struct TileLayout {
  static constexpr Smem kLayout = KCONTIG ? Smem::MNMajor : Smem::KMajor;
  static constexpr int kStride = KCONTIG ? kBK + 4 : R + 8;
  static constexpr int kFloats = KCONTIG ? R * kStride : kBK * kStride;
  // Offset of element (r, k) of the tile.
  __device__ static __forceinline__ int at(int r, int k) { return KCONTIG ? r * kStride + k : k * kStride + r; }
};

__device__ __forceinline__ void mma_tf32(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads, 2) gemm_tf32_kernel(const GemmArgs g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using LA = TileLayout<!TA, kBM>;
  using LB = TileLayout<TB, kBN>;
  // Two buffers of each tile; the epilogue reuses the space as its stage.
  constexpr int kTileFloats = 2 * LA::kFloats + 2 * LB::kFloats;
  constexpr int SR = 2 * 16, SC = kBN, SS = SC + 8;  // stage: one 16-row mma tile row per warp row
  static_assert(SR * SS <= kTileFloats, "the epilogue stage must fit in the tile buffers");
  __shared__ __align__(16) float smem[kTileFloats];
  float* const As = smem;                   // [2][LA::kFloats]
  float* const Bs = smem + 2 * LA::kFloats;  // [2][LB::kFloats]

  index_t pm, pn;
  tile_coords((g.M + kBM - 1) / kBM, (g.N + kBN - 1) / kBN, pm, pn);
  const index_t m0 = pm * kBM, n0 = pn * kBN;
  const int split = blockIdx.y;
  const index_t kb = static_cast<index_t>(split) * g.k_chunk;
  const index_t ke = kb + g.k_chunk < g.K ? kb + g.k_chunk : g.K;
  const index_t ntiles = ke > kb ? (ke - kb + kBK - 1) / kBK : 0;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm0 = (warp / kWarpsN) * kWarpM, wn0 = (warp % kWarpsN) * kWarpN;
  const int gq = lane / 4, tq = lane % 4;

  float acc[kMI][kNI][4];
#pragma unroll
  for (int i = 0; i < kMI; ++i)
#pragma unroll
    for (int j = 0; j < kNI; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  if (ntiles > 0) {
    TileLoad<kBM, kBK, kThreads, !TA> la;
    TileLoad<kBN, kBK, kThreads, TB> lb;
    la.init(g.lda, m0, g.M);
    lb.init(g.ldb, n0, g.N);
    la.load(g.A, g.lda, kb, ke, g.vec_a);
    lb.load(g.B, g.ldb, kb, ke, g.vec_b);
    la.template store<LA::kLayout, LA::kStride, true>(As);
    lb.template store<LB::kLayout, LB::kStride, true>(Bs);
    __syncthreads();

    for (index_t t = 0; t < ntiles; ++t) {
      const int cur = static_cast<int>(t & 1);
      const bool more = t + 1 < ntiles;
      if (more) {
        const index_t k0 = kb + (t + 1) * kBK;
        la.load(g.A, g.lda, k0, ke, g.vec_a);
        lb.load(g.B, g.ldb, k0, ke, g.vec_b);
      }
      const float* a_s = As + cur * LA::kFloats;
      const float* b_s = Bs + cur * LB::kFloats;
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 8) {
        std::uint32_t af[kMI][4], bf[kNI][2];
#pragma unroll
        for (int i = 0; i < kMI; ++i) {
          const int r = wm0 + i * 16 + gq;
          af[i][0] = __float_as_uint(a_s[LA::at(r, kk + tq)]);
          af[i][1] = __float_as_uint(a_s[LA::at(r + 8, kk + tq)]);
          af[i][2] = __float_as_uint(a_s[LA::at(r, kk + tq + 4)]);
          af[i][3] = __float_as_uint(a_s[LA::at(r + 8, kk + tq + 4)]);
        }
#pragma unroll
        for (int j = 0; j < kNI; ++j) {
          const int c = wn0 + j * 8 + gq;
          bf[j][0] = __float_as_uint(b_s[LB::at(c, kk + tq)]);
          bf[j][1] = __float_as_uint(b_s[LB::at(c, kk + tq + 4)]);
        }
#pragma unroll
        for (int i = 0; i < kMI; ++i)
#pragma unroll
          for (int j = 0; j < kNI; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
      }
      if (more) {
        la.template store<LA::kLayout, LA::kStride, true>(As + (cur ^ 1) * LA::kFloats);
        lb.template store<LB::kLayout, LB::kStride, true>(Bs + (cur ^ 1) * LB::kFloats);
      }
      __syncthreads();
    }
  }

  // Epilogue in kMI rounds: round i stages mma tile row i of every warp, element
  // (gq + 8·half, 2·tq + c) of tile (i, j) at stage[(warp/4)*16 + gq + 8·half][wn0 + 8j + 2tq + c],
  // which belongs at tile row (warp/4)*64 + 16i + gq + 8·half and the same column.
  const int srow = (warp / kWarpsN) * 16 + gq;
  __syncthreads();  // the last K step's reads of the tile buffers are done
#pragma unroll
  for (int i = 0; i < kMI; ++i) {
#pragma unroll
    for (int j = 0; j < kNI; ++j) {
      const int col = wn0 + j * 8 + 2 * tq;
      *reinterpret_cast<float2*>(smem + srow * SS + col) = make_float2(acc[i][j][0], acc[i][j][1]);
      *reinterpret_cast<float2*>(smem + (srow + 8) * SS + col) = make_float2(acc[i][j][2], acc[i][j][3]);
    }
    __syncthreads();
    store_stage<SR, SC, SS, kThreads>(
        g, smem, m0, n0, split, [&](int sr) { return (sr / 16) * kWarpM + i * 16 + sr % 16; },
        [](int sc) { return sc; });
    __syncthreads();  // the stage is read before the next round overwrites it
  }
#endif
}

template <bool TA, bool TB>
void launch(const GemmArgs& g, int splits, cudaStream_t stream) {
  const index_t tiles = ((g.M + kBM - 1) / kBM) * ((g.N + kBN - 1) / kBN);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(splits));
  gemm_tf32_kernel<TA, TB><<<grid, kThreads, 0, stream>>>(g);
  FASTMLP_CUDA_CHECK_LAUNCH("gemm_tf32_kernel");
}

}  // namespace

void launch_tf32(bool trans_a, bool trans_b, const GemmArgs& g, int splits, cudaStream_t stream) {
  if (trans_a) {
    if (trans_b) launch<true, true>(g, splits, stream);
    else launch<true, false>(g, splits, stream);
  } else {
    if (trans_b) launch<false, true>(g, splits, stream);
    else launch<false, false>(g, splits, stream);
  }
}

}  // namespace fastmlp::cuda::gemm_detail
