// Element-wise activations on the GPU (math shared with the CPU: common/activation.h).
// The activation is a template parameter, so each kernel is specialised; one
// grid-stride loop per kernel, 64-bit indices.
#include "common/activation.h"
#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr index_t kMaxBlocks = 1 << 16;

template <Act A>
__global__ void act_forward_kernel(float* y, const float* x, index_t n, float param) {
  // y may alias x: each element is read, then written, by the same thread.
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
    y[i] = act_forward(A, x[i], param);
}

template <Act A, bool Accumulate>
__global__ void act_backward_kernel(float* dx, const float* dy, const float* saved, index_t n, float param) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float g = act_backward(A, dy[i], A == Act::Identity ? 0.0f : saved[i], param);
    dx[i] = Accumulate ? dx[i] + g : g;
  }
}

template <Act A>
void launch_forward(float* y, const float* x, index_t n, float param, cudaStream_t stream) {
  act_forward_kernel<A><<<blocks_for(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(y, x, n, param);
  FASTMLP_CUDA_CHECK_LAUNCH("act_forward_kernel");
}

template <Act A>
void launch_backward(float* dx, const float* dy, const float* saved, index_t n, float param, bool accumulate,
                     cudaStream_t stream) {
  const unsigned blocks = blocks_for(n, kThreads, kMaxBlocks);
  if (accumulate)
    act_backward_kernel<A, true><<<blocks, kThreads, 0, stream>>>(dx, dy, saved, n, param);
  else
    act_backward_kernel<A, false><<<blocks, kThreads, 0, stream>>>(dx, dy, saved, n, param);
  FASTMLP_CUDA_CHECK_LAUNCH("act_backward_kernel");
}

}  // namespace

// y = act(x)
void act_forward(float* y, const float* x, index_t n, Act act, float param, cudaStream_t stream) {
  if (n <= 0) return;
  switch (act) {
    case Act::Identity:
      if (y != x) launch_forward<Act::Identity>(y, x, n, param, stream);
      break;
    case Act::ReLU: launch_forward<Act::ReLU>(y, x, n, param, stream); break;
    case Act::LeakyReLU: launch_forward<Act::LeakyReLU>(y, x, n, param, stream); break;
    case Act::Sigmoid: launch_forward<Act::Sigmoid>(y, x, n, param, stream); break;
    case Act::Tanh: launch_forward<Act::Tanh>(y, x, n, param, stream); break;
    case Act::GELU: launch_forward<Act::GELU>(y, x, n, param, stream); break;
  }
}

// dx (+)= dy · act'(saved)
void act_backward(float* dx, const float* dy, const float* saved, index_t n, Act act, float param,
                  bool accumulate, cudaStream_t stream) {
  if (n <= 0) return;
  switch (act) {
    case Act::Identity: launch_backward<Act::Identity>(dx, dy, saved, n, param, accumulate, stream); break;
    case Act::ReLU: launch_backward<Act::ReLU>(dx, dy, saved, n, param, accumulate, stream); break;
    case Act::LeakyReLU: launch_backward<Act::LeakyReLU>(dx, dy, saved, n, param, accumulate, stream); break;
    case Act::Sigmoid: launch_backward<Act::Sigmoid>(dx, dy, saved, n, param, accumulate, stream); break;
    case Act::Tanh: launch_backward<Act::Tanh>(dx, dy, saved, n, param, accumulate, stream); break;
    case Act::GELU: launch_backward<Act::GELU>(dx, dy, saved, n, param, accumulate, stream); break;
  }
}

}  // namespace fastmlp::cuda
