// colsum / rowsum bindings.
#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {
namespace {

py::object reduce(py::handle x_obj, py::handle out_obj, bool accumulate, bool over_rows) {
  const char* fn = over_rows ? "colsum" : "rowsum";
  View x = matrix(x_obj, fn, "x", false);
  const index_t n = over_rows ? x.cols() : x.rows();
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  View out = output_f32(out_obj, {n}, fn, "out");
  require_no_overlap(out, x, fn, "out", "x", false);
  py::gil_scoped_release nogil;
  const cpu::KernelTable& k = cpu::kernels();
  (over_rows ? k.colsum : k.rowsum)(out.f32(), x.f32(), x.rows(), x.cols(), x.ld, accumulate);
  return out.arr;
}

}  // namespace

void bind_reduce(py::module_& m) {
  m.def("colsum", [](py::handle x, py::handle out, bool acc) { return reduce(x, out, acc, true); },
        py::arg("x"), py::arg("out") = py::none(), py::arg("accumulate") = false,
        "out (+)= x.sum(axis=0) for a float32 matrix x [rows, cols] (the bias gradient).");
  m.def("rowsum", [](py::handle x, py::handle out, bool acc) { return reduce(x, out, acc, false); },
        py::arg("x"), py::arg("out") = py::none(), py::arg("accumulate") = false,
        "out (+)= x.sum(axis=1) for a float32 matrix x [rows, cols].");
}

}  // namespace fastmlp::bind
