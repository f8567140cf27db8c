// Element-wise activations on the GPU (math shared with the CPU: common/activation.h).
#include "common/activation.h"
#include "cuda/check.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

template <Act A>
__global__ void act_forward_kernel(float* __restrict__ y, const float* __restrict__ x, std::int64_t n,
                                   float param) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = act_forward(A, x[i], param);
}

template <Act A>
void launch_forward(float* y, const float* x, std::int64_t n, float param, cudaStream_t stream) {
  const int block = 256;
  const std::int64_t want = (n + block - 1) / block;
  const int grid = static_cast<int>(want < 65535 ? (want > 0 ? want : 1) : 65535);
  act_forward_kernel<A><<<grid, block, 0, stream>>>(y, x, n, param);
  FASTMLP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// y = act(x)
void act_forward(float* y, const float* x, std::int64_t n, Act act, float param, cudaStream_t stream) {
  if (n == 0) return;
  switch (act) {
    case Act::Identity: launch_forward<Act::Identity>(y, x, n, param, stream); break;
    case Act::ReLU: launch_forward<Act::ReLU>(y, x, n, param, stream); break;
    case Act::LeakyReLU: launch_forward<Act::LeakyReLU>(y, x, n, param, stream); break;
    case Act::Sigmoid: launch_forward<Act::Sigmoid>(y, x, n, param, stream); break;
    case Act::Tanh: launch_forward<Act::Tanh>(y, x, n, param, stream); break;
    case Act::GELU: launch_forward<Act::GELU>(y, x, n, param, stream); break;
  }
}

}  // namespace fastmlp::cuda
