#include "bindings/args.h"

#include <algorithm>
#include <cstring>

namespace fastmlp::bind {

namespace {

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::F32: return "float32";
    case Dtype::I64: return "int64";
    case Dtype::U8: return "uint8";
    case Dtype::U16: return "uint16";
  }
  return "?";
}

bool has_dtype(const py::array& a, Dtype d) {
  const py::dtype dt = a.dtype();
  switch (d) {
    case Dtype::F32: return dt.kind() == 'f' && dt.itemsize() == 4;
    case Dtype::I64: return dt.kind() == 'i' && dt.itemsize() == 8;
    case Dtype::U8: return (dt.kind() == 'u' || dt.kind() == 'b') && dt.itemsize() == 1;
    case Dtype::U16: return dt.kind() == 'u' && dt.itemsize() == 2;
  }
  return false;
}

py::array as_ndarray(py::handle obj, const char* fn, const char* arg, Dtype dtype) {
  if (!py::isinstance<py::array>(obj))
    type_error(fn, arg, std::string("a ") + dtype_name(dtype) + " numpy array", obj);
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!has_dtype(a, dtype)) type_error(fn, arg, std::string("a ") + dtype_name(dtype) + " array", obj);
  const char order = a.dtype().byteorder();
  const char native = py::dtype::of<float>().byteorder();
  if (order != '=' && order != '|' && order != native)
    value_error(str_cat(fn, ": argument '", arg, "' must be in native byte order; got ", describe(obj)));
  const auto addr = reinterpret_cast<std::uintptr_t>(a.data());
  if (addr % static_cast<std::uintptr_t>(a.itemsize()) != 0)
    value_error(str_cat(fn, ": argument '", arg, "' is not aligned to its element size"));
  return a;
}

View fill_view(py::array a) {
  View v;
  v.data = const_cast<void*>(a.data());
  v.shape.assign(a.shape(), a.shape() + a.ndim());
  v.size = static_cast<index_t>(a.size());
  v.arr = std::move(a);
  return v;
}

void require_writable(const py::array& a, py::handle obj, const char* fn, const char* arg) {
  if (!a.writeable())
    value_error(str_cat(fn, ": argument '", arg, "' is an output and must be writable; got a read-only ",
                        describe(obj)));
}

// Byte range [lo, hi) spanned by an array (its strides are non-negative here).
std::pair<std::uintptr_t, std::uintptr_t> span(const View& v) {
  const auto lo = reinterpret_cast<std::uintptr_t>(v.data);
  if (v.size == 0) return {lo, lo};
  std::uintptr_t extent = static_cast<std::uintptr_t>(v.arr.itemsize());
  for (py::ssize_t d = 0; d < v.arr.ndim(); ++d)
    extent += static_cast<std::uintptr_t>(v.arr.shape(d) - 1) * static_cast<std::uintptr_t>(v.arr.strides(d));
  return {lo, lo + extent};
}

}  // namespace

std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string describe(py::handle obj) {
  if (obj.is_none()) return "None";
  if (py::isinstance<py::array>(obj)) {
    py::array a = py::reinterpret_borrow<py::array>(obj);
    std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
    std::string dt = py::str(a.dtype());
    return dt + " " + shape_str(shape);
  }
  return std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}

void type_error(const char* fn, const char* arg, const std::string& want, py::handle got) {
  throw py::type_error(str_cat(fn, ": argument '", arg, "' must be ", want, "; got ", describe(got)));
}

void value_error(const std::string& msg) { throw py::value_error(msg); }

View contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable) {
  py::array a = as_ndarray(obj, fn, arg, dtype);
  if (!(a.flags() & py::array::c_style))
    value_error(str_cat(fn, ": argument '", arg, "' must be C-contiguous; got a strided ", describe(obj)));
  if (writable) require_writable(a, obj, fn, arg);
  return fill_view(std::move(a));
}

View matrix(py::handle obj, const char* fn, const char* arg, bool writable) {
  py::array a = as_ndarray(obj, fn, arg, Dtype::F32);
  if (a.ndim() != 2)
    value_error(str_cat(fn, ": argument '", arg, "' must be a 2-D matrix; got ", describe(obj)));
  const index_t rows = a.shape(0), cols = a.shape(1);
  const index_t s0 = a.strides(0), s1 = a.strides(1);
  const bool empty = rows == 0 || cols == 0;  // NumPy gives empty arrays arbitrary (even zero) strides
  const bool unit_cols = empty || cols <= 1 || s1 == 4;
  const bool rows_ok = empty || rows <= 1 || (s0 > 0 && s0 % 4 == 0 && s0 / 4 >= cols);
  if (!unit_cols || !rows_ok)
    value_error(str_cat(fn, ": argument '", arg,
                        "' must have contiguous rows (unit column stride, row stride >= columns); got ",
                        describe(obj), " with strides (", s0, ", ", s1, ") bytes"));
  if (writable) require_writable(a, obj, fn, arg);
  View v = fill_view(std::move(a));
  v.ld = (rows <= 1 || empty) ? std::max<index_t>(cols, 1) : s0 / 4;
  return v;
}

View optional_contiguous(py::handle obj, const char* fn, const char* arg, Dtype dtype, bool writable) {
  if (obj.is_none()) return View{};
  return contiguous(obj, fn, arg, dtype, writable);
}

View optional_matrix(py::handle obj, const char* fn, const char* arg, bool writable) {
  if (obj.is_none()) return View{};
  return matrix(obj, fn, arg, writable);
}

void require_shape(const View& v, const std::vector<index_t>& shape, const char* fn, const char* arg) {
  if (v.shape != shape)
    value_error(str_cat(fn, ": argument '", arg, "' must have shape ", shape_str(shape), "; got ",
                        describe(v.arr)));
}

void require_same_shape(const View& a, const View& b, const char* fn, const char* arg_a, const char* arg_b) {
  if (a.shape != b.shape)
    value_error(str_cat(fn, ": arguments '", arg_a, "' and '", arg_b, "' must have the same shape; got ",
                        shape_str(a.shape), " and ", shape_str(b.shape)));
}

void require_no_overlap(const View& out, const View& in, const char* fn, const char* out_arg,
                        const char* in_arg, bool allow_same) {
  if (out.is_none() || in.is_none() || out.size == 0 || in.size == 0) return;
  const auto [a0, a1] = span(out);
  const auto [b0, b1] = span(in);
  if (a1 <= b0 || b1 <= a0) return;
  const bool same = a0 == b0 && a1 == b1 && out.shape == in.shape;
  if (same && allow_same) return;
  value_error(str_cat(fn, ": output '", out_arg, "' overlaps input '", in_arg, "'",
                      same ? " (in-place is not supported here)" : " (partial overlap)"));
}

void Footprint::add(const View& v, const char* name, long index, const char* suffix, bool write) {
  if (v.is_none() || v.size == 0) return;
  const auto [lo, hi] = span(v);
  spans_.push_back({lo, hi, &v, name, index, suffix, write, spans_.size()});
}

std::string Footprint::name_of(const Span& s) const {
  return s.index < 0 ? std::string(s.name) : str_cat(s.name, "[", s.index, "]", s.suffix);
}

void Footprint::check(const char* fn) {
  std::vector<Span>& spans = spans_;
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.lo < b.lo; });
  // A buffer overlaps an earlier-starting one exactly when the furthest end reached so far (by
  // any buffer if it is written, by a written one if it is read) lies beyond its start.
  const Span* reach_any = nullptr;
  const Span* reach_write = nullptr;
  for (const Span& s : spans) {
    const Span* hit = s.write ? reach_any : reach_write;
    if (hit && hit->hi > s.lo) {
      const bool hit_first = hit->write && (!s.write || hit->order < s.order);
      const Span& out = hit_first ? *hit : s;
      const Span& in = hit_first ? s : *hit;
      require_no_overlap(*out.view, *in.view, fn, name_of(out).c_str(), name_of(in).c_str(), false);
    }
    if (!reach_any || s.hi > reach_any->hi) reach_any = &s;
    if (s.write && (!reach_write || s.hi > reach_write->hi)) reach_write = &s;
  }
}

py::array_t<float> new_f32(const std::vector<index_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<float>(s);
}

index_t checked_elements(const std::vector<index_t>& shape, const char* fn, const char* arg, index_t limit) {
  const index_t n = checked_product(shape, limit);
  if (n < 0)
    value_error(str_cat(fn, ": '", arg, "' would have shape ", shape_str(shape), ", more than the ", limit,
                        " elements one call may create (see docs/reliability.md)"));
  return n;
}

py::array_t<float> new_f32(const std::vector<index_t>& shape, const char* fn, const char* arg) {
  checked_elements(shape, fn, arg);
  return new_f32(shape);
}

View output_f32(py::handle out, const std::vector<index_t>& shape, const char* fn, const char* arg) {
  if (out.is_none()) return fill_view(new_f32(shape));
  View v = contiguous(out, fn, arg, Dtype::F32, true);
  require_shape(v, shape, fn, arg);
  return v;
}

void require_labels(const View& labels, index_t rows, index_t classes, std::int64_t ignore_index,
                    const char* fn, const char* arg) {
  require_shape(labels, {rows}, fn, arg);
  const std::int64_t* y = labels.i64();
  for (index_t i = 0; i < rows; ++i) {
    if (y[i] == ignore_index) continue;
    if (y[i] < 0 || y[i] >= classes)
      throw py::index_error(str_cat(fn, ": ", arg, "[", i, "] = ", y[i], " is out of range for ", classes,
                                    " classes (expected 0 <= label < ", classes, ")"));
  }
}

Reduction parse_reduction(const std::string& s, const char* fn) {
  if (s == "mean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  if (s == "none") return Reduction::None;
  value_error(str_cat(fn, ": reduction must be 'none', 'mean' or 'sum'; got '", s, "'"));
}

}  // namespace fastmlp::bind
