// Deterministic reductions: column sums (the bias gradient), row sums, and the
// single-block sum that turns double partials into a 0-d loss. Each output is
// accumulated in double by a fixed set of threads in a fixed order and combined
// by a fixed tree; no atomics.
#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kColTile = 32;   // columns per block (one per lane)
constexpr int kColRows = 32;   // row strides per block (threadIdx.y)

// Block (32, 32): lane x owns column blockIdx.x*32 + x; thread y sums rows y, y+32, ...
__global__ void __launch_bounds__(kColTile * kColRows) colsum_kernel(float* __restrict__ out,
                                                                     const float* __restrict__ x, index_t rows,
                                                                     index_t cols, index_t ldx, bool accumulate) {
  __shared__ double part[kColRows][kColTile + 1];
  const index_t c = static_cast<index_t>(blockIdx.x) * kColTile + threadIdx.x;
  double s = 0.0;
  if (c < cols) {
#pragma unroll 4
    for (index_t r = threadIdx.y; r < rows; r += kColRows) s += x[r * ldx + c];
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t = 0.0;
    for (int k = 0; k < kColRows; ++k) t += part[k][threadIdx.x];
    out[c] = accumulate ? out[c] + static_cast<float>(t) : static_cast<float>(t);
  }
}

constexpr int kThreads = 256;

// One warp per row.
__global__ void __launch_bounds__(kThreads) rowsum_kernel(float* __restrict__ out, const float* __restrict__ x,
                                                          index_t rows, index_t cols, index_t ldx, bool accumulate) {
  const index_t r = static_cast<index_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (r >= rows) return;  // uniform over the warp
  const int lane = threadIdx.x % 32;
  double s = 0.0;
  for (index_t c = lane; c < cols; c += 32) s += x[r * ldx + c];
  s = warp_sum(s);
  if (lane == 0) out[r] = accumulate ? out[r] + static_cast<float>(s) : static_cast<float>(s);
}

constexpr int kSumThreads = 1024;

__global__ void __launch_bounds__(kSumThreads) sum_to_scalar_kernel(float* out, const double* __restrict__ x,
                                                                    index_t n, double divisor) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (index_t i = threadIdx.x; i < n; i += kSumThreads) s += x[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[0] = static_cast<float>(s / divisor);
}

}  // namespace

// out[c] (+)= Σ_r x[r, c]
void colsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate,
            cudaStream_t stream) {
  if (cols <= 0) return;
  const dim3 block(kColTile, kColRows);
  colsum_kernel<<<static_cast<unsigned>((cols + kColTile - 1) / kColTile), block, 0, stream>>>(out, x, rows, cols,
                                                                                              ldx, accumulate);
  FASTMLP_CUDA_CHECK_LAUNCH("colsum_kernel");
}

// out[r] (+)= Σ_c x[r, c]
void rowsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate,
            cudaStream_t stream) {
  if (rows <= 0) return;
  rowsum_kernel<<<static_cast<unsigned>((rows + kThreads / 32 - 1) / (kThreads / 32)), kThreads, 0, stream>>>(
      out, x, rows, cols, ldx, accumulate);
  FASTMLP_CUDA_CHECK_LAUNCH("rowsum_kernel");
}

// out[0] = Σ_i x[i] / divisor
void sum_to_scalar(float* out, const double* x, index_t n, double divisor, cudaStream_t stream) {
  sum_to_scalar_kernel<<<1, kSumThreads, 0, stream>>>(out, x, n, divisor);
  FASTMLP_CUDA_CHECK_LAUNCH("sum_to_scalar_kernel");
}

}  // namespace fastmlp::cuda
