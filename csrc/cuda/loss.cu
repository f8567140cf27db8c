// Element-wise losses (mse, l1, bce, bce_with_logits) with their gradients, and the
// input check binary_cross_entropy needs. Each block writes one double partial sum
// (threads stride in order, then a fixed-order block sum); the grid size depends
// only on n, so the total that sum_to_scalar forms is reproducible.
#include <cmath>

#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr index_t kMaxPartials = 1024;

template <PointwiseLoss KIND>
__device__ __forceinline__ void loss_and_grad(float x, float t, float& l, float& g) {
  switch (KIND) {
    case PointwiseLoss::MSE: {
      const float d = x - t;
      l = d * d;
      g = 2.0f * d;
      break;
    }
    case PointwiseLoss::L1:
      l = fabsf(x - t);
      g = x > t ? 1.0f : (x < t ? -1.0f : 0.0f);
      break;
    case PointwiseLoss::BCE:
      l = -(t * fmaxf(logf(x), -100.0f) + (1.0f - t) * fmaxf(log1pf(-x), -100.0f));
      g = (x - t) / fmaxf((1.0f - x) * x, 1e-12f);
      break;
    case PointwiseLoss::BCEWithLogits:
      l = fmaxf(x, 0.0f) - x * t + log1pf(expf(-fabsf(x)));
      g = 1.0f / (1.0f + expf(-x)) - t;
      break;
  }
}

template <PointwiseLoss KIND>
__global__ void __launch_bounds__(kThreads) pointwise_loss_kernel(float* __restrict__ dinput,
                                                                  float* __restrict__ elem_loss,
                                                                  double* __restrict__ block_sums,
                                                                  const float* __restrict__ input,
                                                                  const float* __restrict__ target,
                                                                  const float* __restrict__ weight, index_t n,
                                                                  float grad_scale) {
  __shared__ double scratch[32];
  double sum = 0.0;
  const index_t stride = static_cast<index_t>(gridDim.x) * kThreads;
  for (index_t i = blockIdx.x * static_cast<index_t>(kThreads) + threadIdx.x; i < n; i += stride) {
    float l, g;
    loss_and_grad<KIND>(input[i], target[i], l, g);
    const float w = weight ? weight[i] : 1.0f;
    const float wl = w * l;
    sum += wl;
    if (elem_loss) elem_loss[i] = wl;
    if (dinput) dinput[i] = grad_scale * w * g;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) block_sums[blockIdx.x] = sum;
}

__global__ void check_unit_interval_kernel(unsigned long long* first_bad, const float* __restrict__ x, index_t n) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
    if (!(x[i] >= 0.0f && x[i] <= 1.0f)) atomicMin(first_bad, static_cast<unsigned long long>(i));
}

template <PointwiseLoss KIND>
void launch(float* dinput, float* elem_loss, double* block_sums, const float* input, const float* target,
            const float* weight, index_t n, float grad_scale, cudaStream_t stream) {
  pointwise_loss_kernel<KIND><<<static_cast<unsigned>(pointwise_loss_partials(n)), kThreads, 0, stream>>>(
      dinput, elem_loss, block_sums, input, target, weight, n, grad_scale);
  FASTMLP_CUDA_CHECK_LAUNCH("pointwise_loss_kernel");
}

}  // namespace

index_t pointwise_loss_partials(index_t n) { return blocks_for(n, 4 * kThreads, kMaxPartials); }

// loss_i = w_i·l(x_i, t_i); dinput_i = grad_scale·w_i·∂l/∂x_i
void pointwise_loss(float* dinput, float* elem_loss, double* block_sums, const float* input, const float* target,
                    const float* weight, index_t n, PointwiseLoss kind, float grad_scale, cudaStream_t stream) {
  // Launched for n == 0 too: the single block writes a zero partial.
  switch (kind) {
    case PointwiseLoss::MSE:
      launch<PointwiseLoss::MSE>(dinput, elem_loss, block_sums, input, target, weight, n, grad_scale, stream);
      break;
    case PointwiseLoss::L1:
      launch<PointwiseLoss::L1>(dinput, elem_loss, block_sums, input, target, weight, n, grad_scale, stream);
      break;
    case PointwiseLoss::BCE:
      launch<PointwiseLoss::BCE>(dinput, elem_loss, block_sums, input, target, weight, n, grad_scale, stream);
      break;
    case PointwiseLoss::BCEWithLogits:
      launch<PointwiseLoss::BCEWithLogits>(dinput, elem_loss, block_sums, input, target, weight, n, grad_scale,
                                           stream);
      break;
  }
}

void check_unit_interval(std::uint64_t* first_bad, const float* x, index_t n, cudaStream_t stream) {
  static_assert(sizeof(std::uint64_t) == sizeof(unsigned long long), "64-bit atomics");
  FASTMLP_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof(std::uint64_t), stream));
  if (n <= 0) return;
  check_unit_interval_kernel<<<blocks_for(n, kThreads, 1 << 16), kThreads, 0, stream>>>(
      reinterpret_cast<unsigned long long*>(first_bad), x, n);
  FASTMLP_CUDA_CHECK_LAUNCH("check_unit_interval_kernel");
}

}  // namespace fastmlp::cuda
