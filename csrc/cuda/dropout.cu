// Dropout with the CPU's counter-based mask (common/philox.h): element i is kept
// when philox_bits(seed, offset, i) >= dropout_threshold(p). One thread per Philox
// block of 4 elements (one philox4x32_10 call yields the bits of elements 4j..4j+3),
// so the mask is bitwise the CPU's for any launch shape.
#include "common/philox.h"
#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ Philox4 philox_block(std::uint64_t j, std::uint64_t seed, std::uint64_t offset) {
  return philox4x32_10(static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(j >> 32),
                       static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(offset >> 32),
                       static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// y may alias x: each element is read, then written, by one thread.
__global__ void dropout_forward_kernel(float* y, std::uint8_t* mask, const float* x, index_t n,
                                       std::uint32_t threshold, bool keep_any, float scale, std::uint64_t seed,
                                       std::uint64_t offset) {
  const index_t groups = (n + 3) / 4;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < groups; j += stride) {
    const Philox4 r = philox_block(static_cast<std::uint64_t>(j), seed, offset);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const index_t i = 4 * j + e;
      if (i >= n) break;
      const bool keep = keep_any && r.v[e] >= threshold;
      if (mask) mask[i] = keep ? 1 : 0;
      y[i] = keep ? x[i] * scale : 0.0f;
    }
  }
}

template <bool Accumulate>
__global__ void dropout_backward_kernel(float* dx, const float* dy, const std::uint8_t* __restrict__ mask,
                                        index_t n, float scale) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float g = mask[i] ? dy[i] * scale : 0.0f;
    dx[i] = Accumulate ? dx[i] + g : g;
  }
}

__global__ void philox_fill_kernel(std::uint32_t* __restrict__ out, index_t n, std::uint64_t seed,
                                   std::uint64_t offset) {
  const index_t groups = (n + 3) / 4;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < groups; j += stride) {
    const Philox4 r = philox_block(static_cast<std::uint64_t>(j), seed, offset);
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (4 * j + e < n) out[4 * j + e] = r.v[e];
  }
}

// The same float expression as the CPU kernels, evaluated on the host.
float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

}  // namespace

// y = x·mask/(1-p), mask_i = [philox_bits(seed, offset, i) >= p·2³²]
void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  dropout_forward_kernel<<<blocks_for((n + 3) / 4, kThreads, 1 << 16), kThreads, 0, stream>>>(
      y, mask, x, n, dropout_threshold(p), p < 1.0f, keep_scale(p), seed, offset);
  FASTMLP_CUDA_CHECK_LAUNCH("dropout_forward_kernel");
}

// dx (+)= dy·mask/(1-p)
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p, bool accumulate,
                      cudaStream_t stream) {
  if (n <= 0) return;
  const unsigned blocks = blocks_for(n, kThreads, 1 << 16);
  if (accumulate) dropout_backward_kernel<true><<<blocks, kThreads, 0, stream>>>(dx, dy, mask, n, keep_scale(p));
  else dropout_backward_kernel<false><<<blocks, kThreads, 0, stream>>>(dx, dy, mask, n, keep_scale(p));
  FASTMLP_CUDA_CHECK_LAUNCH("dropout_backward_kernel");
}

void philox_fill(std::uint32_t* out, index_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  philox_fill_kernel<<<blocks_for((n + 3) / 4, kThreads, 1 << 16), kThreads, 0, stream>>>(out, n, seed, offset);
  FASTMLP_CUDA_CHECK_LAUNCH("philox_fill_kernel");
}

}  // namespace fastmlp::cuda
