// fastmlp._cuda: device queries and the CUDA kernels, with the same function names,
// argument order and semantics as fastmlp._C, for device arrays (anything with
// __cuda_array_interface__, normally cupy.ndarray), plus a keyword-only `stream`
// (a cudaStream_t as an int, 0 being the legacy default stream; by default, None,
// CuPy's current stream on the current device). Work is enqueued on that stream and the call returns
// without waiting, except where a result must be read first (label and BCE input
// checks; see bind_loss.cpp).
//
// Outputs that fastmlp._C allocates with NumPy are allocated here with cupy.empty
// (so CuPy's memory pool owns them, ordered on CuPy's current stream, which is why
// `stream` must be that stream); reduced losses come back as 0-d device arrays.
// See device_args.h for the argument checks.
//
// The CUDA runtime is linked statically; with no driver or no GPU the module still
// imports, device_count() returns 0 and every kernel call raises RuntimeError.
#include <pybind11/pybind11.h>

#include "cuda/check.cuh"
#include "cuda/device_args.h"

namespace py = pybind11;
using namespace fastmlp;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastmlp CUDA kernels (GEMM with fused epilogues, activations, softmax and losses, reductions, "
            "dropout, multi-tensor optimizer steps) for device arrays";
  m.attr("__version__") = FASTMLP_VERSION;
  m.def("device_count", &cuda::bind::device_count, "Number of CUDA devices (0 when there is no driver or GPU).");
  m.def("no_device_reason", &cuda::bind::no_device_reason, "Why no device is usable ('' when one is).");
  m.def("runtime_version", [] {
        int v = 0;
        FASTMLP_CUDA_CHECK(cudaRuntimeGetVersion(&v));
        return v;
      },
      "Version of the statically linked CUDA runtime (e.g. 13000).");
  m.def("device_name", [](int device) {
        if (cuda::bind::device_count() == 0)
          throw std::runtime_error("device_name: no CUDA device is available (" + cuda::bind::no_device_reason() + ")");
        cudaDeviceProp prop{};
        FASTMLP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        return std::string(prop.name);
      },
      py::arg("device") = 0, "Name of a CUDA device.");
  cuda::bind::bind_gemm(m);
  cuda::bind::bind_activation(m);
  cuda::bind::bind_loss(m);
  cuda::bind::bind_reduce(m);
  cuda::bind::bind_dropout(m);
  cuda::bind::bind_optim(m);
}
