// softmax / log_softmax, cross entropy, NLL and element-wise loss bindings.
#include <cmath>
#include <limits>
#include <stdexcept>

#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {
namespace {

View matrix2d(py::handle obj, const char* fn, const char* arg) {
  View v = contiguous(obj, fn, arg, Dtype::F32, false);
  if (v.shape.size() != 2)
    value_error(str_cat(fn, ": argument '", arg, "' must be 2-D [rows, classes]; got ", describe(obj)));
  return v;
}

py::object softmax_forward(py::handle x_obj, bool log, py::handle out_obj) {
  const char* fn = log ? "log_softmax_forward" : "softmax_forward";
  View x = matrix2d(x_obj, fn, "x");
  View y = output_f32(out_obj, x.shape, fn, "out");
  require_no_overlap(y, x, fn, "out", "x", false);
  {
    py::gil_scoped_release nogil;
    cpu::kernels().softmax_forward(y.f32(), x.f32(), x.rows(), x.cols(), log);
  }
  return y.arr;
}

py::object softmax_backward(py::handle dy_obj, py::handle y_obj, bool log, py::handle out_obj) {
  const char* fn = log ? "log_softmax_backward" : "softmax_backward";
  View dy = matrix2d(dy_obj, fn, "dy");
  View y = matrix2d(y_obj, fn, "y");
  require_same_shape(dy, y, fn, "dy", "y");
  View dx = output_f32(out_obj, dy.shape, fn, "out");
  require_no_overlap(dx, dy, fn, "out", "dy", false);
  require_no_overlap(dx, y, fn, "out", "y", false);
  {
    py::gil_scoped_release nogil;
    cpu::kernels().softmax_backward(dx.f32(), dy.f32(), y.f32(), dy.rows(), dy.cols(), log);
  }
  return dx.arr;
}

// Shared by softmax_xent and nll: checks, calls `kernel`, applies the reduction.
template <typename Kernel>
py::tuple class_loss(const char* fn, py::handle input_obj, py::handle labels_obj, py::handle weight_obj,
                     std::int64_t ignore_index, const std::string& reduction_s, bool want_grad,
                     Kernel kernel) {
  const Reduction reduction = parse_reduction(reduction_s, fn);
  View input = matrix2d(input_obj, fn, "input");
  const index_t rows = input.rows(), cols = input.cols();
  View labels = contiguous(labels_obj, fn, "target", Dtype::I64, false);
  if (labels.shape.size() != 1 || labels.shape[0] != rows)
    value_error(str_cat(fn, ": target must have shape [", rows, "] to match input ", shape_str(input.shape),
                        "; got ", describe(labels_obj)));
  require_labels(labels, rows, cols, ignore_index, fn, "target");
  View weight = optional_contiguous(weight_obj, fn, "weight", Dtype::F32, false);
  if (!weight.is_none()) require_shape(weight, {cols}, fn, "weight");
  py::array_t<float> row_loss;
  float* row_loss_p = nullptr;
  if (reduction == Reduction::None) {
    row_loss = new_f32({rows});
    row_loss_p = row_loss.mutable_data();
  }
  py::array_t<float> grad;
  float* grad_p = nullptr;
  if (want_grad) {
    grad = new_f32({rows, cols}, fn, "grad");
    grad_p = grad.mutable_data();
  }
  cpu::LossSums sums;
  {
    py::gil_scoped_release nogil;
    sums = kernel(grad_p, row_loss_p, input.f32(), labels.i64(), weight.is_none() ? nullptr : weight.f32(),
                  rows, cols, reduction == Reduction::Mean);
  }
  py::object loss;
  if (reduction == Reduction::None) loss = row_loss;
  else if (reduction == Reduction::Sum) loss = py::float_(sums.loss_sum);
  else loss = py::float_(sums.weight_sum != 0.0 ? sums.loss_sum / sums.weight_sum
                                                 : std::numeric_limits<double>::quiet_NaN());
  py::object g = want_grad ? py::object(grad) : py::object(py::none());
  return py::make_tuple(loss, g, sums.weight_sum);
}

py::tuple softmax_xent(py::handle logits, py::handle labels, py::handle weight, std::int64_t ignore_index,
                       float label_smoothing, const std::string& reduction, bool want_grad, float grad_scale) {
  const char* fn = "cross_entropy";
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    value_error(str_cat(fn, ": label_smoothing must be in [0, 1]; got ", label_smoothing));
  return class_loss(fn, logits, labels, weight, ignore_index, reduction, want_grad,
                    [&](float* g, float* rl, const float* in, const std::int64_t* y, const float* w, index_t r,
                        index_t c, bool mean) {
                      return cpu::kernels().softmax_xent(g, rl, in, y, w, r, c, ignore_index, label_smoothing,
                                                         grad_scale, mean);
                    });
}

py::tuple nll(py::handle logp, py::handle labels, py::handle weight, std::int64_t ignore_index,
              const std::string& reduction, bool want_grad, float grad_scale) {
  return class_loss("nll_loss", logp, labels, weight, ignore_index, reduction, want_grad,
                    [&](float* g, float* rl, const float* in, const std::int64_t* y, const float* w, index_t r,
                        index_t c, bool mean) {
                      return cpu::kernels().nll(g, rl, in, y, w, r, c, ignore_index, grad_scale, mean);
                    });
}

py::tuple pointwise_loss(py::handle input_obj, py::handle target_obj, int kind_code, py::handle weight_obj,
                         const std::string& reduction_s, bool want_grad, float grad_scale) {
  static const char* names[] = {"mse_loss", "l1_loss", "binary_cross_entropy",
                                "binary_cross_entropy_with_logits"};
  if (kind_code < 0 || kind_code > 3)
    value_error(str_cat("pointwise_loss: kind must be 0 (mse), 1 (l1), 2 (bce) or 3 (bce_with_logits); got ",
                        kind_code));
  const char* fn = names[kind_code];
  const auto kind = static_cast<cpu::PointwiseLoss>(kind_code);
  const Reduction reduction = parse_reduction(reduction_s, fn);
  View input = contiguous(input_obj, fn, "input", Dtype::F32, false);
  View target = contiguous(target_obj, fn, "target", Dtype::F32, false);
  require_same_shape(input, target, fn, "input", "target");
  View weight = optional_contiguous(weight_obj, fn, "weight", Dtype::F32, false);
  if (!weight.is_none()) require_same_shape(input, weight, fn, "input", "weight");
  if (kind == cpu::PointwiseLoss::BCE) {
    const float* x = input.f32();
    for (index_t i = 0; i < input.size; ++i)
      if (!(x[i] >= 0.0f && x[i] <= 1.0f))
        // A value error in the data, not the call: RuntimeError, as torch raises.
        throw std::runtime_error(
            str_cat(fn, ": all elements of input should be between 0 and 1; input[", i, "] = ", x[i]));
  }
  py::array_t<float> elem;
  float* elem_p = nullptr;
  if (reduction == Reduction::None) {
    elem = new_f32(input.shape);
    elem_p = elem.mutable_data();
  }
  py::array_t<float> grad;
  float* grad_p = nullptr;
  if (want_grad) {
    grad = new_f32(input.shape);
    grad_p = grad.mutable_data();
  }
  const float scale = reduction == Reduction::Mean && input.size > 0
                          ? static_cast<float>(grad_scale / static_cast<double>(input.size))
                          : grad_scale;
  double sum;
  {
    py::gil_scoped_release nogil;
    sum = cpu::kernels().pointwise_loss(grad_p, elem_p, input.f32(), target.f32(),
                                        weight.is_none() ? nullptr : weight.f32(), input.size, kind, scale);
  }
  py::object loss;
  if (reduction == Reduction::None) loss = elem;
  else if (reduction == Reduction::Sum) loss = py::float_(sum);
  else loss = py::float_(input.size ? sum / static_cast<double>(input.size)
                                    : std::numeric_limits<double>::quiet_NaN());
  py::object g = want_grad ? py::object(grad) : py::object(py::none());
  return py::make_tuple(loss, g);
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("log") = false, py::arg("out") = py::none(),
        "Row-wise softmax (or log_softmax when log=True) of a C-contiguous float32 [rows, cols] array.");
  m.def("softmax_backward", &softmax_backward, py::arg("dy"), py::arg("y"), py::arg("log") = false,
        py::arg("out") = py::none(), "Gradient of softmax / log_softmax given its output y.");
  m.def("softmax_xent", &softmax_xent, py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0f, py::arg("reduction") = "mean",
        py::arg("want_grad") = false, py::arg("grad_scale") = 1.0f,
        "Fused softmax + cross entropy against int64 class indices, as torch.nn.functional.cross_entropy. "
        "Returns (loss, grad_logits or None, weight_sum); the gradient is that of the reduced loss "
        "(of the summed loss for reduction='none') times grad_scale.");
  m.def("nll", &nll, py::arg("logp"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("reduction") = "mean", py::arg("want_grad") = false,
        py::arg("grad_scale") = 1.0f,
        "Negative log-likelihood on log-probabilities, as torch.nn.functional.nll_loss; returns "
        "(loss, grad or None, weight_sum).");
  m.def("pointwise_loss", &pointwise_loss, py::arg("input"), py::arg("target"), py::arg("kind"),
        py::arg("weight") = py::none(), py::arg("reduction") = "mean", py::arg("want_grad") = false,
        py::arg("grad_scale") = 1.0f,
        "Element-wise loss (kind 0 mse, 1 l1, 2 bce, 3 bce_with_logits) with optional per-element "
        "weight; returns (loss, grad or None).");
}

}  // namespace fastmlp::bind
