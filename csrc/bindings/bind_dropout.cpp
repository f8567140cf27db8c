// dropout_forward / dropout_backward / philox_bits bindings.
#include "bindings/args.h"
#include "bindings/families.h"
#include "common/philox.h"

namespace fastmlp::bind {
namespace {

void check_p(float p, const char* fn) {
  if (!(p >= 0.0f && p <= 1.0f)) value_error(str_cat(fn, ": p must be in [0, 1]; got ", p));
}

py::tuple dropout_forward(py::handle x_obj, float p, std::uint64_t seed, std::uint64_t offset,
                          py::handle out_obj, bool want_mask) {
  const char* fn = "dropout_forward";
  check_p(p, fn);
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  View y = output_f32(out_obj, x.shape, fn, "out");
  require_no_overlap(y, x, fn, "out", "x", true);
  py::array_t<std::uint8_t> mask;
  std::uint8_t* mask_p = nullptr;
  if (want_mask) {
    mask = py::array_t<std::uint8_t>(std::vector<py::ssize_t>(x.shape.begin(), x.shape.end()));
    mask_p = mask.mutable_data();
  }
  {
    py::gil_scoped_release nogil;
    cpu::kernels().dropout_forward(y.f32(), mask_p, x.f32(), x.size, p, seed, offset);
  }
  return py::make_tuple(y.arr, want_mask ? py::object(mask) : py::object(py::none()));
}

py::object dropout_backward(py::handle dy_obj, py::handle mask_obj, float p, py::handle out_obj,
                            bool accumulate) {
  const char* fn = "dropout_backward";
  check_p(p, fn);
  View dy = contiguous(dy_obj, fn, "dy", Dtype::F32, false);
  View mask = contiguous(mask_obj, fn, "mask", Dtype::U8, false);
  require_same_shape(dy, mask, fn, "dy", "mask");
  if (accumulate && out_obj.is_none())
    value_error(str_cat(fn, ": accumulate=True needs an 'out' array to accumulate into"));
  View dx = output_f32(out_obj, dy.shape, fn, "out");
  require_no_overlap(dx, dy, fn, "out", "dy", !accumulate);
  {
    py::gil_scoped_release nogil;
    cpu::kernels().dropout_backward(dx.f32(), dy.f32(), mask.u8(), dy.size, p, accumulate);
  }
  return dx.arr;
}

py::array_t<std::uint32_t> philox_bits_array(std::uint64_t seed, std::uint64_t offset, index_t n) {
  if (n < 0) value_error(str_cat("philox_bits: n must be >= 0; got ", n));
  if (n > kMaxPhiloxWords)
    value_error(str_cat("philox_bits: n must be <= ", kMaxPhiloxWords, " (2**28 words, see docs/reliability.md); got ",
                        n));
  py::array_t<std::uint32_t> out(n);
  std::uint32_t* o = out.mutable_data();
  for (index_t i = 0; i < n; ++i) o[i] = philox_bits(seed, offset, static_cast<std::uint64_t>(i));
  return out;
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        py::arg("out") = py::none(), py::arg("want_mask") = true,
        "Inverted dropout: element i is kept (and scaled by 1/(1-p)) when its Philox bits for "
        "(seed, offset, i) are >= p * 2**32. Returns (y, mask or None); mask is uint8, 1 = kept.");
  m.def("dropout_backward", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"),
        py::arg("out") = py::none(), py::arg("accumulate") = false, "dx (+)= dy * mask / (1 - p).");
  m.def("philox_bits", &philox_bits_array, py::arg("seed"), py::arg("offset"), py::arg("n"),
        "The first n 32-bit words of the Philox4x32-10 stream (seed, offset) that dropout uses.");
}

}  // namespace fastmlp::bind
