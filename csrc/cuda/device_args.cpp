#include "cuda/device_args.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "common/limits.h"

#include "cuda/check.cuh"

namespace fastmlp::cuda::bind {

namespace {

struct DtypeInfo {
  const char* name;   // numpy name
  const char* code;   // typestr without the byte-order character
  index_t itemsize;
};

DtypeInfo info_of(Dtype d) {
  switch (d) {
    case Dtype::F32: return {"float32", "f4", 4};
    case Dtype::F64: return {"float64", "f8", 8};
    case Dtype::I64: return {"int64", "i8", 8};
    case Dtype::U8: return {"uint8", "u1", 1};
    case Dtype::U32: return {"uint32", "u4", 4};
  }
  return {"?", "?", 0};
}

// numpy-style name of an interface typestr ("<f4" -> "float32").
std::string typestr_name(const std::string& t) {
  if (t.size() < 3) return t;
  const std::string code = t.substr(1);
  const char kind = code[0];
  const std::string bits = std::to_string(8 * std::atoi(code.c_str() + 1));
  if (kind == 'f') return "float" + bits;
  if (kind == 'i') return "int" + bits;
  if (kind == 'u') return "uint" + bits;
  if (kind == 'b') return "bool";
  if (kind == 'c') return "complex" + std::to_string(16 * std::atoi(code.c_str() + 1));
  return t;
}

bool typestr_matches(const std::string& t, Dtype d) {
  if (t.size() < 3 || t[0] == '>') return false;
  const std::string code = t.substr(1);
  if (d == Dtype::U8 && code == "b1") return true;  // bool masks, as the CPU bindings accept
  return code == info_of(d).code;
}

std::string type_name(py::handle obj) {
  py::handle type = py::type::handle_of(obj);
  const std::string mod = py::str(type.attr("__module__"));
  const std::string name = py::str(type.attr("__qualname__"));
  return mod == "builtins" ? name : mod + "." + name;
}

}  // namespace

std::string describe(py::handle obj) {
  if (obj.is_none()) return "None";
  py::object cai = py::getattr(obj, "__cuda_array_interface__", py::none());
  if (py::isinstance<py::dict>(cai)) {
    std::vector<index_t> shape;
    for (auto d : py::tuple(cai["shape"])) shape.push_back(d.cast<index_t>());
    return typestr_name(py::str(cai["typestr"])) + " " + shape_str(shape);
  }
  if (py::hasattr(obj, "__array_interface__") && py::hasattr(obj, "shape") && py::hasattr(obj, "dtype")) {
    std::vector<index_t> shape;
    for (auto d : py::tuple(obj.attr("shape"))) shape.push_back(d.cast<index_t>());
    return type_name(obj) + " " + std::string(py::str(obj.attr("dtype"))) + " " + shape_str(shape) +
           " in host memory (use fastmlp._C for host arrays)";
  }
  return type_name(obj);
}

namespace {

[[noreturn]] void type_error(const char* fn, const char* arg, const std::string& want, py::handle got) {
  throw py::type_error(str_cat(fn, ": argument '", arg, "' must be ", want, "; got ", describe(got)));
}

// Reads the interface and checks the dtype; fills pointer, shape, strides, size.
DevView parse(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable) {
  const DtypeInfo di = info_of(dtype);
  py::object cai_obj = py::getattr(obj, "__cuda_array_interface__", py::none());
  if (!py::isinstance<py::dict>(cai_obj))
    type_error(fn, arg, str_cat("a ", di.name, " CUDA device array (cupy.ndarray)"), obj);
  py::dict cai = cai_obj;
  const std::string typestr = py::str(cai["typestr"]);
  if (!typestr_matches(typestr, dtype)) type_error(fn, arg, str_cat("a ", di.name, " array"), obj);
  if (cai.contains("mask") && !cai["mask"].is_none())
    value_error(str_cat(fn, ": argument '", arg, "' is a masked array; masks are not supported"));
  DevView v;
  v.obj = py::reinterpret_borrow<py::object>(obj);
  v.itemsize = di.itemsize;
  py::tuple data = cai["data"];
  v.ptr = data[0].cast<std::uintptr_t>();
  const bool readonly = data[1].cast<bool>();
  for (auto d : py::tuple(cai["shape"])) {
    v.shape.push_back(d.cast<index_t>());
    if (v.shape.back() < 0)
      value_error(str_cat(fn, ": argument '", arg, "' has a negative dimension: shape ", shape_str(v.shape)));
  }
  // The shape is the object's own account of itself: its product, and the byte strides
  // derived from it below, must fit in 64 bits before any arithmetic trusts them.
  std::vector<index_t> spans(v.shape);
  for (index_t& d : spans) d = std::max<index_t>(d, 1);
  if (checked_product(spans, std::numeric_limits<index_t>::max() / v.itemsize) < 0)
    value_error(str_cat(fn, ": argument '", arg, "' has shape ", shape_str(v.shape),
                        ", more bytes than a 64-bit size can hold"));
  v.size = checked_product(v.shape, std::numeric_limits<index_t>::max());
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (auto s : py::tuple(cai["strides"])) v.strides.push_back(s.cast<index_t>());
  } else {
    v.strides.assign(v.shape.size(), 0);
    index_t s = v.itemsize;
    for (size_t d = v.shape.size(); d-- > 0;) {
      v.strides[d] = s;
      s *= std::max<index_t>(v.shape[d], 1);
    }
  }
  if (cai.contains("stream") && !cai["stream"].is_none()) {
    v.has_stream = true;
    v.stream = cai["stream"].cast<std::uintptr_t>();
  }
  if (v.size > 0 && v.ptr % static_cast<std::uintptr_t>(v.itemsize) != 0)
    value_error(str_cat(fn, ": argument '", arg, "' is not aligned to its element size"));
  if (writable && readonly)
    value_error(str_cat(fn, ": argument '", arg, "' is an output and must be writable; got a read-only ",
                        describe(obj)));
  return v;
}

bool c_contiguous(const DevView& v) {
  if (v.size == 0) return true;
  index_t expect = v.itemsize;
  for (size_t d = v.shape.size(); d-- > 0;) {
    if (v.shape[d] != 1 && v.strides[d] != expect) return false;
    expect *= v.shape[d];
  }
  return true;
}

// Byte range [lo, hi) an array spans (its strides are non-negative once checked).
std::pair<std::uintptr_t, std::uintptr_t> span(const DevView& v) {
  if (v.size == 0) return {v.ptr, v.ptr};
  std::uintptr_t extent = static_cast<std::uintptr_t>(v.itemsize);
  for (size_t d = 0; d < v.shape.size(); ++d)
    extent += static_cast<std::uintptr_t>(v.shape[d] - 1) * static_cast<std::uintptr_t>(v.strides[d]);
  return {v.ptr, v.ptr + extent};
}

}  // namespace

std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void value_error(const std::string& msg) { throw py::value_error(msg); }

DevView contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable) {
  DevView v = parse(obj, fn, arg, dtype, writable);
  if (!c_contiguous(v))
    value_error(str_cat(fn, ": argument '", arg, "' must be C-contiguous; got a strided ", describe(obj)));
  return v;
}

DevView matrix(py::handle obj, const char* fn, const char* arg, bool writable) {
  DevView v = parse(obj, fn, arg, Dtype::F32, writable);
  if (v.shape.size() != 2)
    value_error(str_cat(fn, ": argument '", arg, "' must be a 2-D matrix; got ", describe(obj)));
  const index_t rows = v.shape[0], cols = v.shape[1];
  const index_t s0 = v.strides[0], s1 = v.strides[1];
  // An empty matrix has no elements to address: any strides will do.
  const bool unit_cols = v.size == 0 || cols <= 1 || s1 == 4;
  const bool rows_ok = v.size == 0 || rows <= 1 || (s0 > 0 && s0 % 4 == 0 && s0 / 4 >= cols);
  if (!unit_cols || !rows_ok)
    value_error(str_cat(fn, ": argument '", arg,
                        "' must have contiguous rows (unit column stride, row stride >= columns); got ",
                        describe(obj), " with strides (", s0, ", ", s1, ") bytes"));
  // Normalise the strides of degenerate dimensions so that span() stays exact.
  if (v.size == 0 || cols <= 1) v.strides[1] = 4;
  v.ld = v.size == 0 || rows <= 1 ? std::max<index_t>(cols, 1) : s0 / 4;
  if (v.size == 0 || rows <= 1) v.strides[0] = 4 * v.ld;
  return v;
}

DevView optional_contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable) {
  if (obj.is_none()) return DevView{};
  return contiguous(obj, fn, arg, dtype, writable);
}

DevView optional_matrix(py::handle obj, const char* fn, const char* arg, bool writable) {
  if (obj.is_none()) return DevView{};
  return matrix(obj, fn, arg, writable);
}

void require_shape(const DevView& v, const std::vector<index_t>& shape, const char* fn, const char* arg) {
  if (v.shape != shape)
    value_error(str_cat(fn, ": argument '", arg, "' must have shape ", shape_str(shape), "; got ",
                        describe(v.obj)));
}

void require_same_shape(const DevView& a, const DevView& b, const char* fn, const char* arg_a,
                        const char* arg_b) {
  if (a.shape != b.shape)
    value_error(str_cat(fn, ": arguments '", arg_a, "' and '", arg_b, "' must have the same shape; got ",
                        shape_str(a.shape), " and ", shape_str(b.shape)));
}

void require_no_overlap(const DevView& out, const DevView& in, const char* fn, const char* out_arg,
                        const char* in_arg, bool allow_same) {
  if (out.is_none() || in.is_none() || out.size == 0 || in.size == 0) return;
  const auto [a0, a1] = span(out);
  const auto [b0, b1] = span(in);
  if (a1 <= b0 || b1 <= a0) return;
  const bool same = a0 == b0 && a1 == b1 && out.shape == in.shape && out.strides == in.strides;
  if (same && allow_same) return;
  value_error(str_cat(fn, ": output '", out_arg, "' overlaps input '", in_arg, "'",
                      same ? " (in-place is not supported here)" : " (partial overlap)"));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the "no driver" / "no device" error
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

namespace {

// CuPy's current stream on the current device, or 0 (the legacy default stream)
// when CuPy is not installed.
std::uintptr_t cupy_current_stream() {
  py::module_ cupy_cuda;
  try {
    cupy_cuda = py::module_::import("cupy.cuda");
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_ImportError)) throw;
    return 0;
  }
  return cupy_cuda.attr("get_current_stream")().attr("ptr").cast<std::uintptr_t>();
}

}  // namespace

DeviceCall::DeviceCall(const char* fn, py::handle stream) : fn_(fn), stream_(nullptr) {
  // The device count cannot change while the process runs: ask once.
  static const int count = device_count();
  if (count == 0)
    throw std::runtime_error(str_cat(fn, ": no CUDA device is available (", no_device_reason(), ")"));
  check_cuda(cudaGetDevice(&device_), fn);
  std::uintptr_t s = 0;
  if (stream.is_none()) {
    s = cupy_current_stream();
    pool_stream_checked_ = true;  // it is CuPy's current stream by construction
  } else if (py::isinstance<py::int_>(stream) && !py::isinstance<py::bool_>(stream)) {
    try {
      s = stream.cast<std::uintptr_t>();
    } catch (const py::cast_error&) {
      value_error(str_cat(fn, ": 'stream' must be a cudaStream_t as a non-negative int (or None for CuPy's current "
                          "stream); got ", std::string(py::str(stream))));
    }
  } else {
    throw py::type_error(str_cat(fn, ": 'stream' must be an int (a cudaStream_t, such as "
                                 "cupy.cuda.get_current_stream().ptr) or None for CuPy's current stream; got ",
                                 describe(stream)));
  }
  stream_ = reinterpret_cast<cudaStream_t>(s);
}

void DeviceCall::use(const DevView& v, const char* arg) {
  if (v.is_none() || v.size == 0) return;
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(v.ptr));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    value_error(str_cat(fn_, ": argument '", arg, "' does not point to CUDA memory (", cudaGetErrorName(err), ")"));
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    value_error(str_cat(fn_, ": argument '", arg, "' must be in device memory; its pointer is ",
                        attr.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory"));
  if (attr.device != device_)
    value_error(str_cat(fn_, ": argument '", arg, "' is on cuda:", attr.device, " but the call runs on cuda:",
                        device_, " (the current device); all arrays of one call must be on one device, and it "
                        "must be current (with cupy.cuda.Device(", attr.device, "):)"));
  if (v.has_stream) {
    // Interface stream values: 1 = legacy default stream, 2 = per-thread default
    // stream, else a cudaStream_t; our stream 0 is the legacy default stream.
    const std::uintptr_t ours = stream_ ? reinterpret_cast<std::uintptr_t>(stream_) : 1;
    if (v.stream != ours && std::find(waited_.begin(), waited_.end(), v.stream) == waited_.end()) {
      cudaEvent_t ev;
      check_cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), fn_);
      cudaError_t e1 = cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(v.stream));
      cudaError_t e2 = e1 == cudaSuccess ? cudaStreamWaitEvent(stream_, ev, 0) : e1;
      (void)cudaEventDestroy(ev);  // released once the wait completes
      check_cuda(e2, fn_);
      waited_.push_back(v.stream);
    }
  }
}

DevView DeviceCall::empty(const std::vector<index_t>& shape, Dtype dtype, const char* arg) {
  if (checked_product(shape, kMaxElements) < 0)
    value_error(str_cat(fn_, ": '", arg, "' would have shape ", shape_str(shape), ", more than the ", kMaxElements,
                        " elements one call may create (see docs/reliability.md)"));
  py::module_ cupy;
  try {
    cupy = py::module_::import("cupy");
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_ImportError)) throw;
    throw py::import_error(str_cat(fn_, ": allocating '", arg, "' on the device needs CuPy, which failed to import: ",
                                   e.what()));
  }
  if (!pool_stream_checked_) {
    // CuPy's pool orders the memory it hands out on its current stream; kernels on
    // another stream could still use memory the pool has already given to the next
    // user of that stream.
    const auto current = cupy.attr("cuda").attr("get_current_stream")().attr("ptr").cast<std::uintptr_t>();
    if (current != reinterpret_cast<std::uintptr_t>(stream_))
      value_error(str_cat(fn_, ": 'stream' must be CuPy's current stream (", current, "), on which CuPy allocates ",
                          "the outputs; got ", reinterpret_cast<std::uintptr_t>(stream_),
                          ". Pass cupy.cuda.get_current_stream().ptr, or make the stream current "
                          "(with cupy.cuda.Stream(...):)"));
    pool_stream_checked_ = true;
  }
  py::tuple s(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s[i] = py::int_(shape[i]);
  py::object arr = cupy.attr("empty")(s, py::arg("dtype") = info_of(dtype).name);
  DevView v = contiguous(arr, fn_, arg, dtype, true);
  use(v, arg);
  return v;
}

DevView optional_output(py::handle out, const std::vector<index_t>& shape, Dtype dtype, const char* fn,
                        const char* arg) {
  if (out.is_none()) return DevView{};
  DevView v = contiguous(out, fn, arg, dtype, true);
  require_shape(v, shape, fn, arg);
  return v;
}

DevView DeviceCall::output(DevView given, const std::vector<index_t>& shape, Dtype dtype, const char* arg) {
  if (given.is_none()) return empty(shape, dtype, arg);
  use(given, arg);
  return given;
}

void DeviceCall::read_back(void* host, const void* device, std::size_t bytes) {
  cudaError_t err;
  {
    py::gil_scoped_release nogil;
    err = cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  }
  check_cuda(err, fn_);
}

Act act_from_int(int act, const char* fn) {
  if (act < 0 || act >= kNumActs)
    value_error(str_cat(fn, ": act must be an activation code in [0, ", kNumActs,
                        ") (identity, relu, leaky_relu, sigmoid, tanh, gelu); got ", act));
  return static_cast<Act>(act);
}

Reduction parse_reduction(const std::string& s, const char* fn) {
  if (s == "mean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  if (s == "none") return Reduction::None;
  value_error(str_cat(fn, ": reduction must be 'none', 'mean' or 'sum'; got '", s, "'"));
}

}  // namespace fastmlp::cuda::bind
