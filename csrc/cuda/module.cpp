// fastmlp._cuda: device queries and the CUDA kernels. The CUDA runtime is linked
// statically; with no driver or no GPU the module still imports and
// device_count() returns 0.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/kernels.cuh"

namespace py = pybind11;
using namespace fastmlp;

namespace {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (err != cudaSuccess) return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return n == 0 ? "no CUDA device found" : "";
}

// A device array as described by __cuda_array_interface__ (CuPy, Numba, PyTorch).
struct DeviceArray {
  std::uintptr_t ptr = 0;
  std::int64_t size = 1;
  std::string typestr;
};

DeviceArray device_array(py::handle obj, const char* fn, const char* arg, const char* typestr, bool writable) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(fn) + ": argument '" + arg + "' must be a CUDA device array (e.g. cupy.ndarray); got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::dict cai = obj.attr("__cuda_array_interface__");
  DeviceArray a;
  a.typestr = py::str(cai["typestr"]);
  if (a.typestr != typestr)
    throw py::type_error(std::string(fn) + ": argument '" + arg + "' must have dtype " + typestr + "; got " + a.typestr);
  py::tuple data = cai["data"];
  a.ptr = data[0].cast<std::uintptr_t>();
  if (writable && data[1].cast<bool>())
    throw py::value_error(std::string(fn) + ": argument '" + arg + "' is an output and must be writable");
  for (auto d : py::tuple(cai["shape"])) a.size *= d.cast<std::int64_t>();
  if (cai.contains("strides") && !cai["strides"].is_none())
    throw py::value_error(std::string(fn) + ": argument '" + arg + "' must be C-contiguous");
  return a;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastmlp CUDA kernels";
  m.attr("__version__") = FASTMLP_VERSION;
  m.def("device_count", &device_count, "Number of CUDA devices (0 when there is no driver or GPU).");
  m.def("no_device_reason", &no_device_reason, "Why no device is usable ('' when one is).");
  m.def("runtime_version", [] {
        int v = 0;
        FASTMLP_CUDA_CHECK(cudaRuntimeGetVersion(&v));
        return v;
      },
      "Version of the statically linked CUDA runtime (e.g. 13000).");
  m.def("act_forward",
        [](py::handle x, py::handle y, int act, float param, std::uintptr_t stream) {
          if (act < 0 || act >= kNumActs) throw py::value_error("act_forward: act code out of range");
          DeviceArray xa = device_array(x, "act_forward", "x", "<f4", false);
          DeviceArray ya = device_array(y, "act_forward", "out", "<f4", true);
          if (xa.size != ya.size) throw py::value_error("act_forward: x and out differ in size");
          cuda::act_forward(reinterpret_cast<float*>(ya.ptr), reinterpret_cast<const float*>(xa.ptr), xa.size,
                            static_cast<Act>(act), param, reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("x"), py::arg("out"), py::arg("act"), py::arg("param") = 0.0f, py::arg("stream") = 0,
        "out = act(x) on the device, enqueued on `stream` (a cudaStream_t as an int).");
}
