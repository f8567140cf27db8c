// Small device helpers shared by the CUDA kernels: launch sizes, warp and block
// reductions. All reductions here combine values in a fixed order (a tree whose
// shape depends only on the launch configuration), so results are bitwise
// reproducible from run to run; no floating-point atomics are used anywhere.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"

namespace fastmlp::cuda {

using index_t = std::int64_t;

constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for n work items at `per_block` items per block, at least 1 and at most
// `cap` (kernels then loop with a grid stride over the rest).
inline unsigned blocks_for(index_t n, index_t per_block, index_t cap = 1 << 20) {
  index_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  // Butterfly: every lane ends with the same bits (each step adds a commutative pair).
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum of `v` over the block (blockDim.x a multiple of 32, at most 1024), returned
// to every thread. `scratch` holds at least 32 values. Must be reached by every
// thread of the block; it synchronises twice, so scratch may be reused after it.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < nwarps ? scratch[lane] : T(0);
  total = warp_sum(total);
  __syncthreads();
  return total;
}

__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = lane < nwarps ? scratch[lane] : -__int_as_float(0x7f800000);
  m = warp_max(m);
  __syncthreads();
  return m;
}

}  // namespace fastmlp::cuda
