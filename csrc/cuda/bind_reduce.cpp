// colsum / rowsum bindings (device arrays); same arguments as fastmlp._C plus
// keyword-only `stream`.
#include "cuda/device_args.h"

namespace fastmlp::cuda::bind {
namespace {

py::object reduce_binding(py::handle x_obj, py::handle out_obj, bool accumulate, bool over_rows,
                          py::object stream) {
  const char* fn = over_rows ? "colsum" : "rowsum";
  DevView x = matrix(x_obj, fn, "x", false);
  const index_t n = over_rows ? x.cols() : x.rows();
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  DevView given = optional_output(out_obj, {n}, Dtype::F32, fn, "out");
  require_no_overlap(given, x, fn, "out", "x", false);
  DeviceCall call(fn, stream);
  call.use(x, "x");
  DevView out = call.output(given, {n}, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    (over_rows ? colsum : rowsum)(out.f32(), x.f32(), x.rows(), x.cols(), x.ld, accumulate, call.stream());
  }
  return out.obj;
}

}  // namespace

void bind_reduce(py::module_& m) {
  m.def("colsum",
        [](py::handle x, py::handle out, bool acc, py::object stream) {
          return reduce_binding(x, out, acc, true, stream);
        },
        py::arg("x"), py::arg("out") = py::none(), py::arg("accumulate") = false, py::kw_only(),
        py::arg("stream") = py::none(),
        "out (+)= x.sum(axis=0) for a float32 device matrix x [rows, cols] (the bias gradient); "
        "deterministic (fixed summation order, double accumulation).");
  m.def("rowsum",
        [](py::handle x, py::handle out, bool acc, py::object stream) {
          return reduce_binding(x, out, acc, false, stream);
        },
        py::arg("x"), py::arg("out") = py::none(), py::arg("accumulate") = false, py::kw_only(),
        py::arg("stream") = py::none(), "out (+)= x.sum(axis=1) for a float32 device matrix x [rows, cols].");
}

}  // namespace fastmlp::cuda::bind
