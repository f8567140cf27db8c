// dropout_forward / dropout_backward / philox_bits bindings (device arrays); same
// arguments as fastmlp._C plus keyword-only `stream`. Masks are bitwise the CPU's.
#include "cuda/device_args.h"

namespace fastmlp::cuda::bind {
namespace {

void check_p(float p, const char* fn) {
  if (!(p >= 0.0f && p <= 1.0f)) value_error(str_cat(fn, ": p must be in [0, 1]; got ", p));
}

py::tuple dropout_forward_binding(py::handle x_obj, float p, std::uint64_t seed, std::uint64_t offset,
                                  py::handle out_obj, bool want_mask, py::object stream) {
  const char* fn = "dropout_forward";
  check_p(p, fn);
  DevView x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  DevView given = optional_output(out_obj, x.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, x, fn, "out", "x", true);
  DeviceCall call(fn, stream);
  call.use(x, "x");
  DevView y = call.output(given, x.shape, Dtype::F32, "out");
  DevView mask;
  if (want_mask) mask = call.empty(x.shape, Dtype::U8, "mask");
  {
    py::gil_scoped_release nogil;
    dropout_forward(y.f32(), mask.is_none() ? nullptr : mask.u8(), x.f32(), x.size, p, seed, offset, call.stream());
  }
  return py::make_tuple(y.obj, want_mask ? mask.obj : py::object(py::none()));
}

py::object dropout_backward_binding(py::handle dy_obj, py::handle mask_obj, float p, py::handle out_obj,
                                    bool accumulate, py::object stream) {
  const char* fn = "dropout_backward";
  check_p(p, fn);
  DevView dy = contiguous(dy_obj, fn, "dy", Dtype::F32, false);
  DevView mask = contiguous(mask_obj, fn, "mask", Dtype::U8, false);
  require_same_shape(dy, mask, fn, "dy", "mask");
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  DevView given = optional_output(out_obj, dy.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, dy, fn, "out", "dy", !accumulate);
  require_no_overlap(given, mask, fn, "out", "mask", false);
  DeviceCall call(fn, stream);
  call.use(dy, "dy");
  call.use(mask, "mask");
  DevView dx = call.output(given, dy.shape, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    dropout_backward(dx.f32(), dy.f32(), mask.u8(), dy.size, p, accumulate, call.stream());
  }
  return dx.obj;
}

py::object philox_bits_binding(std::uint64_t seed, std::uint64_t offset, index_t n, py::object stream) {
  const char* fn = "philox_bits";
  if (n < 0) value_error(str_cat(fn, ": n must be >= 0; got ", n));
  DeviceCall call(fn, stream);
  DevView out = call.empty({n}, Dtype::U32, "out");
  {
    py::gil_scoped_release nogil;
    philox_fill(out.u32(), n, seed, offset, call.stream());
  }
  return out.obj;
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout_forward", &dropout_forward_binding, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("out") = py::none(), py::arg("want_mask") = true, py::kw_only(), py::arg("stream") = py::none(),
        "Inverted dropout on the device: element i is kept (and scaled by 1/(1-p)) when its Philox bits for "
        "(seed, offset, i) are >= p * 2**32 -- the same mask as fastmlp._C. Returns (y, mask or None); mask "
        "is uint8, 1 = kept.");
  m.def("dropout_backward", &dropout_backward_binding, py::arg("dy"), py::arg("mask"), py::arg("p"),
        py::arg("out") = py::none(), py::arg("accumulate") = false, py::kw_only(), py::arg("stream") = py::none(),
        "dx (+)= dy * mask / (1 - p).");
  m.def("philox_bits", &philox_bits_binding, py::arg("seed"), py::arg("offset"), py::arg("n"), py::kw_only(),
        py::arg("stream") = py::none(),
        "The first n 32-bit words of the Philox4x32-10 stream (seed, offset) that dropout uses, as a uint32 "
        "device array.");
}

}  // namespace fastmlp::cuda::bind
