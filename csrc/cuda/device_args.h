// Argument checks for the fastmlp._cuda bindings, the device counterpart of
// bindings/args.h. A device array is any object exposing __cuda_array_interface__
// (CuPy, Numba, PyTorch); each argument becomes a checked view (dtype, rank,
// shape, strides, writability, aliasing, and that its memory is device memory on
// the current device) before any kernel is launched, and a bad argument raises
// TypeError / ValueError naming the function, the argument and what it got:
//   gemm: argument 'a' must be a float32 array; got float64 [32, 785]
//
// Outputs the CPU bindings allocate with NumPy are allocated here with
// cupy.empty on the current device, so CuPy's memory pool owns them; the caller
// passes CuPy's current stream as `stream`, the stream the pool orders that memory
// on. CuPy is imported lazily, only when an output or a scratch buffer is needed.
#pragma once

#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda::bind {

namespace py = pybind11;

enum class Dtype { F32, F64, I64, U8, U32 };

// A checked view of a device array. `ld` is the row stride, in elements, of a 2-D
// matrix view (rows contiguous; the rows themselves may be spaced).
struct DevView {
  py::object obj;  // keeps the array alive for the duration of the call
  std::uintptr_t ptr = 0;
  std::vector<index_t> shape;
  std::vector<index_t> strides;  // in bytes, as the interface gives them (C-contiguous ones when absent)
  index_t size = 0;
  index_t itemsize = 0;
  index_t ld = 0;
  bool has_stream = false;   // the interface names the stream that produced the data
  std::uintptr_t stream = 0;

  bool is_none() const { return !obj; }
  index_t rows() const { return shape[0]; }
  index_t cols() const { return shape.size() > 1 ? shape[1] : 1; }
  float* f32() const { return reinterpret_cast<float*>(ptr); }
  double* f64() const { return reinterpret_cast<double*>(ptr); }
  const std::int64_t* i64() const { return reinterpret_cast<const std::int64_t*>(ptr); }
  std::uint8_t* u8() const { return reinterpret_cast<std::uint8_t*>(ptr); }
  std::uint32_t* u32() const { return reinterpret_cast<std::uint32_t*>(ptr); }
};

std::string shape_str(const std::vector<index_t>& shape);
// "float64 [32, 785]" for a device array, a note that a NumPy array is in host
// memory, the type name for anything else.
std::string describe(py::handle obj);
[[noreturn]] void value_error(const std::string& msg);

// Any-rank C-contiguous device array of `dtype`; `writable` for outputs.
DevView contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable);
// 2-D float32 matrix whose rows are contiguous (unit column stride, row stride >= cols).
DevView matrix(py::handle obj, const char* fn, const char* arg, bool writable);
// Same, or an empty view when obj is None.
DevView optional_contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable);
DevView optional_matrix(py::handle obj, const char* fn, const char* arg, bool writable);

// An `out` argument: empty when None, else a writable C-contiguous array of this shape.
DevView optional_output(py::handle out, const std::vector<index_t>& shape, Dtype dtype, const char* fn,
                        const char* arg);

void require_shape(const DevView& v, const std::vector<index_t>& shape, const char* fn, const char* arg);
void require_same_shape(const DevView& a, const DevView& b, const char* fn, const char* arg_a, const char* arg_b);
// Outputs may alias an input exactly (in-place) only where `allow_same` says so;
// partial overlap is always refused.
void require_no_overlap(const DevView& out, const DevView& in, const char* fn, const char* out_arg,
                        const char* in_arg, bool allow_same);

// Number of CUDA devices (0 when there is no driver or no GPU), and why none is usable.
int device_count();
std::string no_device_reason();

// One binding call on the device: constructed after the arguments' metadata is
// checked, it requires a usable device (RuntimeError otherwise, naming the
// reason) and resolves `stream`: an int is a cudaStream_t (0: the legacy default
// stream); None, the default of every binding, is CuPy's current stream on the
// current device (the legacy default stream when CuPy is not installed). Then `use` checks that each array lives in device memory on the
// current device and makes `stream` wait for the stream an array's interface
// names, when that is another stream.
class DeviceCall {
 public:
  DeviceCall(const char* fn, py::handle stream);
  void use(const DevView& v, const char* arg);
  cudaStream_t stream() const { return stream_; }
  // A new C-contiguous device array (cupy.empty) on the current device, checked with
  // use(). Requires `stream` to be CuPy's current stream (ValueError otherwise).
  DevView empty(const std::vector<index_t>& shape, Dtype dtype, const char* arg);
  // `given` (an optional_output view) when present, else a new array.
  DevView output(DevView given, const std::vector<index_t>& shape, Dtype dtype, const char* arg);
  // Waits for the stream (GIL released) and copies `bytes` from device memory to `host`.
  void read_back(void* host, const void* device, std::size_t bytes);

 private:
  const char* fn_;
  cudaStream_t stream_;
  int device_ = -1;
  std::vector<std::uintptr_t> waited_;  // producer streams already waited for
  bool pool_stream_checked_ = false;     // `stream` is CuPy's current stream
};

// Activation code from Python, checked.
Act act_from_int(int act, const char* fn);

enum class Reduction { None, Mean, Sum };
Reduction parse_reduction(const std::string& s, const char* fn);

// Registration, one function per kernel family (bind_<family>.cpp).
void bind_gemm(py::module_& m);
void bind_activation(py::module_& m);
void bind_loss(py::module_& m);
void bind_reduce(py::module_& m);
void bind_dropout(py::module_& m);
void bind_optim(py::module_& m);

}  // namespace fastmlp::cuda::bind
