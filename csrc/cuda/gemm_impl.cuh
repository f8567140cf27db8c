// Internals shared by the GEMM kernels (gemm.cu, gemm_simt.cu, gemm_tf32.cu):
// the launch arguments, the tile loaders between global and shared memory, the
// tile order and the epilogue.
//
// Every variant is a tiled kernel: a block computes a BM x BN tile of C over one
// split of K, BK values of k at a time. Tiles of op(A) and op(B) go global ->
// registers -> shared memory, double-buffered: while the block multiplies the
// tile in one shared buffer it loads the next tile into registers, then stores it
// into the other buffer; one __syncthreads per K step. Out-of-range rows, columns
// and k are loaded as zeros, so edges need no special case in the inner loop.
// The results leave through shared memory too (store_stage): in a few rounds the
// threads stage part of their accumulators, then every thread applies the
// epilogue to consecutive columns, so global stores are coalesced and the
// activation code is instantiated once per kernel rather than once per register.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/activation.h"
#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda::gemm_detail {

struct GemmArgs {
  float* C;
  const float* A;
  const float* B;
  index_t ldc, lda, ldb;
  index_t M, N, K;
  float alpha, beta;
  const float* bias;  // [N] or null
  float* preact;      // [M, ldz] or null
  index_t ldz;
  Act act;
  float act_param;
  float* partial;     // split-K: [splits, M, N] partial products (no epilogue), else null
  index_t k_chunk;    // K per split (a multiple of BK when splits > 1)
  bool vec_a, vec_b;  // float4 loads are allowed (16-byte aligned base, ld % 4 == 0)
};

// Launchers, one per family; `splits` is gridDim.y.
void launch_simt(GemmAlgo algo, bool trans_a, bool trans_b, const GemmArgs& args, int splits,
                 cudaStream_t stream);
void launch_tf32(bool trans_a, bool trans_b, const GemmArgs& args, int splits, cudaStream_t stream);

// Block tile sizes of each variant (rows, columns, k).
struct TileShape {
  int bm, bn, bk;
};
constexpr TileShape tile_shape(GemmAlgo algo) {
  return algo == GemmAlgo::Simt128x128 ? TileShape{128, 128, 8}
         : algo == GemmAlgo::Simt64x64 ? TileShape{64, 64, 16}
         : algo == GemmAlgo::Simt16x64 ? TileShape{16, 64, 16}
                                       : TileShape{128, 128, 16};  // Tf32
}

// Tile (pm, pn) of block blockIdx.x. Blocks are ordered in groups of 8 tile rows,
// column by column inside a group, so that blocks running at the same time share
// rows of A and columns of B in L2.
__device__ __forceinline__ void tile_coords(index_t grid_m, index_t grid_n, index_t& pm, index_t& pn) {
  constexpr index_t kGroup = 8;
  const index_t pid = blockIdx.x;
  const index_t per_group = kGroup * grid_n;
  const index_t first_m = (pid / per_group) * kGroup;
  const index_t group_rows = grid_m - first_m < kGroup ? grid_m - first_m : kGroup;
  const index_t local = pid % per_group;
  pm = first_m + local % group_rows;
  pn = local / group_rows;
}

__device__ __forceinline__ float tf32_round(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
#else
  return x;
#endif
}

// Shared-memory layouts of a tile with R rows (m or n) and BK values of k:
// KMajor stores S[k][r] (row stride R + pad), MNMajor stores S[r][k] (stride BK + pad).
enum class Smem { KMajor, MNMajor };

// One operand tile staged in registers. KCONTIG: element (r, k) of the tile lives at
// src[r*ld + k] (k contiguous in memory: A not transposed, B transposed); otherwise
// at src[k*ld + r]. Each thread moves kIters float4 groups of 4 consecutive elements
// along the contiguous direction; init() works out, once per block, where each of
// its groups starts and how much of it lies inside the matrix along r.
template <int R, int BK, int NT, bool KCONTIG>
struct TileLoad {
  static constexpr int kVecs = R * BK / 4;
  static constexpr int kIters = (kVecs + NT - 1) / NT;
  static_assert(R % 4 == 0 && BK % 4 == 0, "tile sides must be multiples of 4");
  float4 v[kIters];
  index_t off[kIters];  // offset of the group's first element in the tile at k0 = 0
  int k_of[kIters];     // k of the group's first element, relative to the tile's k0
  int r_in[kIters];     // elements of the group inside the matrix along r (0 or 1 when KCONTIG: the row)

  __device__ __forceinline__ void init(index_t ld, index_t r0, index_t r_end) {
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int f = threadIdx.x + it * NT;
      const int r = KCONTIG ? f / (BK / 4) : (f % (R / 4)) * 4;
      const int k = KCONTIG ? (f % (BK / 4)) * 4 : f / (R / 4);
      const index_t gr = r0 + r;
      const index_t left = r_end - gr;
      k_of[it] = k;
      r_in[it] = !(kVecs % NT == 0 || f < kVecs) || left <= 0 ? 0 : KCONTIG ? 1 : (left < 4 ? static_cast<int>(left) : 4);
      off[it] = KCONTIG ? gr * ld + k : k * ld + gr;
    }
  }

  // Loads the tile whose first k is k0; k in [k0, k_end) is in range, the rest (and
  // rows outside the matrix) load as 0. `vec` allows float4 loads (16-byte aligned
  // base, ld % 4 == 0; groups start at multiples of 4).
  __device__ __forceinline__ void load(const float* src, index_t ld, index_t k0, index_t k_end, bool vec) {
    const index_t shift = KCONTIG ? k0 : k0 * ld;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const index_t gk = k0 + k_of[it];
      if (r_in[it] > 0 && gk < k_end) {
        const float* p = src + (off[it] + shift);
        if (KCONTIG) {  // the group runs along k
          if (vec && gk + 4 <= k_end) {
            val = *reinterpret_cast<const float4*>(p);
          } else {
            val.x = p[0];
            if (gk + 1 < k_end) val.y = p[1];
            if (gk + 2 < k_end) val.z = p[2];
            if (gk + 3 < k_end) val.w = p[3];
          }
        } else {  // the group runs along r
          if (vec && r_in[it] == 4) {
            val = *reinterpret_cast<const float4*>(p);
          } else {
            val.x = p[0];
            if (r_in[it] > 1) val.y = p[1];
            if (r_in[it] > 2) val.z = p[2];
            if (r_in[it] > 3) val.w = p[3];
          }
        }
      }
      v[it] = val;
    }
  }

  // Writes the staged tile to S laid out as `L` with row stride `STRIDE` (floats;
  // a multiple of 4 so that float4 stores stay aligned), TF32-rounded if asked.
  template <Smem L, int STRIDE, bool TF32>
  __device__ __forceinline__ void store(float* S) const {
    static_assert(STRIDE % 4 == 0, "shared rows must stay 16-byte aligned");
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int f = threadIdx.x + it * NT;
      if (kVecs % NT == 0 || f < kVecs) {
        float4 val = v[it];
        if (TF32) {
          val.x = tf32_round(val.x);
          val.y = tf32_round(val.y);
          val.z = tf32_round(val.z);
          val.w = tf32_round(val.w);
        }
        // (r, k) of the group's first element; the group runs along k when KCONTIG.
        const int r = KCONTIG ? f / (BK / 4) : (f % (R / 4)) * 4;
        const int k = KCONTIG ? (f % (BK / 4)) * 4 : f / (R / 4);
        const bool along_k = KCONTIG;
        if ((L == Smem::KMajor) != along_k) {
          // The group is contiguous in shared memory too: one float4 store.
          float* dst = L == Smem::KMajor ? S + k * STRIDE + r : S + r * STRIDE + k;
          *reinterpret_cast<float4*>(dst) = val;
        } else if (L == Smem::KMajor) {  // along k into S[k][r]
          S[(k + 0) * STRIDE + r] = val.x;
          S[(k + 1) * STRIDE + r] = val.y;
          S[(k + 2) * STRIDE + r] = val.z;
          S[(k + 3) * STRIDE + r] = val.w;
        } else {  // along r into S[r][k]
          S[(r + 0) * STRIDE + k] = val.x;
          S[(r + 1) * STRIDE + k] = val.y;
          S[(r + 2) * STRIDE + k] = val.z;
          S[(r + 3) * STRIDE + k] = val.w;
        }
      }
    }
  }
};

// Epilogue for one element: z = alpha·acc + beta·C + bias[n]; preact = z; C = act(z).
__device__ __forceinline__ void store_output(const GemmArgs& g, index_t m, index_t n, float acc) {
  float z = g.alpha * acc;
  if (g.beta != 0.0f) z += g.beta * g.C[m * g.ldc + n];
  if (g.bias) z += g.bias[n];
  if (g.preact) g.preact[m * g.ldz + n] = z;
  g.C[m * g.ldc + n] = act_forward(g.act, z, g.act_param);
}

// One result of the block's tile: the epilogue into C, or a plain store into this
// split's slice of the split-K workspace.
__device__ __forceinline__ void store_result(const GemmArgs& g, index_t m, index_t n, float v, int split) {
  if (g.partial) g.partial[(static_cast<index_t>(split) * g.M + m) * g.N + n] = v;
  else store_output(g, m, n, v);
}

// Epilogue of one round: `stage` (shared memory) holds ROWS x COLS results, row-major
// with row stride STRIDE; staged element (sr, sc) belongs at C[m0 + row_of(sr),
// n0 + col_of(sc)]. All NT threads walk the stage so that consecutive threads write
// consecutive columns.
template <int ROWS, int COLS, int STRIDE, int NT, typename RowOf, typename ColOf>
__device__ __forceinline__ void store_stage(const GemmArgs& g, const float* stage, index_t m0, index_t n0,
                                            int split, RowOf row_of, ColOf col_of) {
  static_assert(ROWS * COLS % NT == 0, "the stage must split evenly over the threads");
#pragma unroll 2
  for (int idx = threadIdx.x; idx < ROWS * COLS; idx += NT) {
    const int sr = idx / COLS, sc = idx % COLS;
    const index_t m = m0 + row_of(sr), n = n0 + col_of(sc);
    if (m < g.M && n < g.N) store_result(g, m, n, stage[sr * STRIDE + sc], split);
  }
}

}  // namespace fastmlp::cuda::gemm_detail
