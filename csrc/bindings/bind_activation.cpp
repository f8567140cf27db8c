// act_forward / act_backward bindings.
#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {

Act act_from_int(int act, const char* fn) {
  if (act < 0 || act >= kNumActs)
    value_error(str_cat(fn, ": act must be an activation code in [0, ", kNumActs,
                        ") (identity, relu, leaky_relu, sigmoid, tanh, gelu); got ", act));
  return static_cast<Act>(act);
}

namespace {

py::object act_forward(py::handle x_obj, int act_code, float param, py::handle out_obj) {
  const char* fn = "act_forward";
  const Act act = act_from_int(act_code, fn);
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  View y = output_f32(out_obj, x.shape, fn, "out");
  require_no_overlap(y, x, fn, "out", "x", true);
  {
    py::gil_scoped_release nogil;
    cpu::kernels().act_forward(y.f32(), x.f32(), x.size, act, param);
  }
  return y.arr;
}

py::object act_backward(py::handle dy_obj, py::handle saved_obj, int act_code, float param,
                        py::handle out_obj, bool accumulate) {
  const char* fn = "act_backward";
  const Act act = act_from_int(act_code, fn);
  View dy = contiguous(dy_obj, fn, "dy", Dtype::F32, false);
  View saved = act == Act::Identity ? dy : contiguous(saved_obj, fn, "saved", Dtype::F32, false);
  require_same_shape(dy, saved, fn, "dy", "saved");
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  View dx = output_f32(out_obj, dy.shape, fn, "out");
  require_no_overlap(dx, dy, fn, "out", "dy", !accumulate);
  require_no_overlap(dx, saved, fn, "out", "saved", !accumulate);
  {
    py::gil_scoped_release nogil;
    cpu::kernels().act_backward(dx.f32(), dy.f32(), saved.f32(), dy.size, act, param, accumulate);
  }
  return dx.arr;
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("act_forward", &act_forward, py::arg("x"), py::arg("act"), py::arg("param") = 0.0f,
        py::arg("out") = py::none(),
        "y = act(x) element-wise; act is an activation code (0 identity, 1 relu, 2 leaky_relu "
        "with slope `param`, 3 sigmoid, 4 tanh, 5 gelu). `out` may be x itself (in place).");
  m.def("act_backward", &act_backward, py::arg("dy"), py::arg("saved"), py::arg("act"),
        py::arg("param") = 0.0f, py::arg("out") = py::none(), py::arg("accumulate") = false,
        "dx = dy * act'(.) where `saved` is the activation's input for leaky_relu and gelu and "
        "its output otherwise; with accumulate=True, out += that.");
}

}  // namespace fastmlp::bind
