// The CUDA kernel set: the same functions as the CPU's (cpu/kernels.h), over device
// pointers, enqueued on the given stream. Launchers check launch errors and throw.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/activation.h"

namespace fastmlp::cuda {

void act_forward(float* y, const float* x, std::int64_t n, Act act, float param, cudaStream_t stream);

}  // namespace fastmlp::cuda
