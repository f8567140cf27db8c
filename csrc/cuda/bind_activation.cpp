// act_forward / act_backward bindings (device arrays); same arguments as fastmlp._C
// plus keyword-only `stream`. Without `out` the result is a new cupy array.
#include "cuda/device_args.h"

namespace fastmlp::cuda::bind {
namespace {

py::object act_forward_binding(py::handle x_obj, int act_code, float param, py::handle out_obj,
                               py::object stream) {
  const char* fn = "act_forward";
  const Act act = act_from_int(act_code, fn);
  DevView x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  DevView given = optional_output(out_obj, x.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, x, fn, "out", "x", true);
  DeviceCall call(fn, stream);
  call.use(x, "x");
  DevView y = call.output(given, x.shape, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    act_forward(y.f32(), x.f32(), x.size, act, param, call.stream());
  }
  return y.obj;
}

py::object act_backward_binding(py::handle dy_obj, py::handle saved_obj, int act_code, float param,
                                py::handle out_obj, bool accumulate, py::object stream) {
  const char* fn = "act_backward";
  const Act act = act_from_int(act_code, fn);
  DevView dy = contiguous(dy_obj, fn, "dy", Dtype::F32, false);
  DevView saved = act == Act::Identity ? dy : contiguous(saved_obj, fn, "saved", Dtype::F32, false);
  require_same_shape(dy, saved, fn, "dy", "saved");
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  DevView given = optional_output(out_obj, dy.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, dy, fn, "out", "dy", !accumulate);
  require_no_overlap(given, saved, fn, "out", "saved", !accumulate);
  DeviceCall call(fn, stream);
  call.use(dy, "dy");
  call.use(saved, "saved");
  DevView dx = call.output(given, dy.shape, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    act_backward(dx.f32(), dy.f32(), saved.f32(), dy.size, act, param, accumulate, call.stream());
  }
  return dx.obj;
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("act_forward", &act_forward_binding, py::arg("x"), py::arg("act"), py::arg("param") = 0.0f,
        py::arg("out") = py::none(), py::kw_only(), py::arg("stream") = py::none(),
        "y = act(x) element-wise on the device; act is an activation code (0 identity, 1 relu, 2 leaky_relu "
        "with slope `param`, 3 sigmoid, 4 tanh, 5 gelu). `out` may be x itself (in place).");
  m.def("act_backward", &act_backward_binding, py::arg("dy"), py::arg("saved"), py::arg("act"),
        py::arg("param") = 0.0f, py::arg("out") = py::none(), py::arg("accumulate") = false, py::kw_only(),
        py::arg("stream") = py::none(),
        "dx = dy * act'(.) where `saved` is the activation's input for leaky_relu and gelu and its output "
        "otherwise; with accumulate=True, out += that.");
}

}  // namespace fastmlp::cuda::bind
