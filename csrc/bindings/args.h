// Argument checks shared by the bindings. Every binding turns each Python
// argument into a checked view (dtype, rank, shape, strides, alignment,
// writability, aliasing) before any kernel touches memory, and raises
// TypeError / ValueError naming the function, the argument and what it got:
//   gemm: argument 'a' must be a float32 array; got float64 [32, 785]
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/limits.h"
#include "cpu/kernels.h"

namespace fastmlp::bind {

namespace py = pybind11;
using cpu::index_t;

// "float64 [32, 785]" for an array, the type name for anything else.
std::string describe(py::handle obj);
std::string shape_str(const std::vector<index_t>& shape);

[[noreturn]] void type_error(const char* fn, const char* arg, const std::string& want, py::handle got);
[[noreturn]] void value_error(const std::string& msg);

// A checked view of a NumPy array. `ld` is the row stride, in elements, of a
// 2-D matrix view (rows must be contiguous; the rows themselves may be spaced).
struct View {
  py::array arr;  // keeps the memory alive for the duration of the call
  void* data = nullptr;
  std::vector<index_t> shape;
  index_t size = 0;
  index_t ld = 0;

  index_t rows() const { return shape[0]; }
  index_t cols() const { return shape.size() > 1 ? shape[1] : 1; }
  float* f32() const { return static_cast<float*>(data); }
  const std::int64_t* i64() const { return static_cast<const std::int64_t*>(data); }
  const std::uint8_t* u8() const { return static_cast<const std::uint8_t*>(data); }
  std::uint8_t* u8_mut() const { return static_cast<std::uint8_t*>(data); }
  std::uint16_t* u16() const { return static_cast<std::uint16_t*>(data); }
  bool is_none() const { return data == nullptr && shape.empty(); }
};

enum class Dtype { F32, I64, U8, U16 };

// Any-rank C-contiguous array of `dtype`; `writable` for outputs.
View contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable);
// 2-D float32 matrix whose rows are contiguous (unit column stride, row stride >= cols).
View matrix(py::handle obj, const char* fn, const char* arg, bool writable);
// Same, or an empty View when obj is None.
View optional_contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable);
View optional_matrix(py::handle obj, const char* fn, const char* arg, bool writable);

void require_shape(const View& v, const std::vector<index_t>& shape, const char* fn, const char* arg);
void require_same_shape(const View& a, const View& b, const char* fn, const char* arg_a, const char* arg_b);
// Outputs may alias an input exactly (in-place) only where `allow_same` says so;
// partial overlap is always refused.
void require_no_overlap(const View& out, const View& in, const char* fn, const char* out_arg,
                        const char* in_arg, bool allow_same);

// The buffers one call writes and reads, with the names its errors give them. check()
// raises ValueError (require_no_overlap's message) when a written buffer overlaps any other
// buffer; read buffers may overlap each other. Sorting by address finds an overlap in
// O(n log n), and a name is only formatted for the error: a call with many buffers (a
// multi-tensor optimizer step, an MLP's backward pass) pays little for the check.
// The Views must outlive the Footprint.
class Footprint {
 public:
  // Named `name`, or with index >= 0 `name[index]suffix` ("layers[2].weight").
  void write(const View& v, const char* name, long index = -1, const char* suffix = "") {
    add(v, name, index, suffix, true);
  }
  void read(const View& v, const char* name, long index = -1, const char* suffix = "") {
    add(v, name, index, suffix, false);
  }
  void check(const char* fn);  // (sorts the buffers in place)

 private:
  struct Span {
    std::uintptr_t lo, hi;
    const View* view;
    const char* name;
    long index;
    const char* suffix;
    bool write;
    size_t order;  // insertion order: an error names the earlier-added written buffer first
  };
  void add(const View& v, const char* name, long index, const char* suffix, bool write);
  std::string name_of(const Span& s) const;
  std::vector<Span> spans_;
};

// New C-contiguous float32 array of this shape.
py::array_t<float> new_f32(const std::vector<index_t>& shape);
// Same, for a shape computed from the arguments: its element count is checked for
// overflow and against `limit` (common/limits.h) first, and ValueError names `fn`,
// `arg` and the shape past it.
py::array_t<float> new_f32(const std::vector<index_t>& shape, const char* fn, const char* arg);
// The element count of `shape`, checked the same way.
index_t checked_elements(const std::vector<index_t>& shape, const char* fn, const char* arg,
                         index_t limit = kMaxElements);
// `out` when given (checked against shape), else a new array.
View output_f32(py::handle out, const std::vector<index_t>& shape, const char* fn, const char* arg);

// Labels: int64 [rows] in [0, classes) or equal to ignore_index.
void require_labels(const View& labels, index_t rows, index_t classes, std::int64_t ignore_index,
                    const char* fn, const char* arg);

// reduction argument: "none", "mean" or "sum".
enum class Reduction { None, Mean, Sum };
Reduction parse_reduction(const std::string& s, const char* fn);

}  // namespace fastmlp::bind
