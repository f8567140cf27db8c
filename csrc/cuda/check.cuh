// Error handling for the CUDA extension: every CUDA runtime call is checked and a
// failure becomes a Python RuntimeError naming the call and the CUDA error. Every
// kernel launch is followed by FASTMLP_CUDA_CHECK_LAUNCH(), which reports a bad
// launch configuration (and any earlier asynchronous error) at the launch site.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fastmlp::cuda {

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace fastmlp::cuda

#define FASTMLP_CUDA_CHECK(call) ::fastmlp::cuda::check_cuda((call), #call)
#define FASTMLP_CUDA_CHECK_LAUNCH(kernel_name) \
  ::fastmlp::cuda::check_cuda(cudaGetLastError(), "launching " kernel_name)
