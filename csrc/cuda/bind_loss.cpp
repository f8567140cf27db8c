// softmax / log_softmax, cross entropy, NLL and element-wise loss bindings (device
// arrays); same arguments as fastmlp._C plus keyword-only `stream`.
//
// Reduced losses come back as 0-d float32 cupy arrays (the sum is formed on the
// device in double, in a fixed order), so the loss itself needs no
// synchronisation; reduction='none' returns the per-row / per-element losses.
// Two checks must read data before the loss kernel runs, and so synchronise the
// stream once per call:
//  - class-index losses run check_labels first (one block): it finds the first
//    label that is neither ignore_index nor in [0, classes) and the weight sums; the
//    binding reads that back, raises IndexError naming the label, and otherwise
//    uses the weight sum (returned as a Python float, like the CPU's) to scale
//    the gradient of a mean;
//  - binary_cross_entropy checks that every input lies in [0, 1] (ValueError).
#include <cmath>
#include <limits>
#include <stdexcept>

#include "cuda/device_args.h"

namespace fastmlp::cuda::bind {
namespace {

constexpr std::uint64_t kNoBadIndex = ~std::uint64_t{0};

DevView matrix2d(py::handle obj, const char* fn, const char* arg) {
  DevView v = contiguous(obj, fn, arg, Dtype::F32, false);
  if (v.shape.size() != 2)
    value_error(str_cat(fn, ": argument '", arg, "' must be 2-D [rows, classes]; got ",
                        describe(obj)));
  return v;
}

py::object softmax_forward_binding(py::handle x_obj, bool log, py::handle out_obj, py::object stream) {
  const char* fn = log ? "log_softmax_forward" : "softmax_forward";
  DevView x = matrix2d(x_obj, fn, "x");
  DevView given = optional_output(out_obj, x.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, x, fn, "out", "x", false);
  DeviceCall call(fn, stream);
  call.use(x, "x");
  DevView y = call.output(given, x.shape, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    softmax_forward(y.f32(), x.f32(), x.rows(), x.cols(), log, call.stream());
  }
  return y.obj;
}

py::object softmax_backward_binding(py::handle dy_obj, py::handle y_obj, bool log, py::handle out_obj,
                                    py::object stream) {
  const char* fn = log ? "log_softmax_backward" : "softmax_backward";
  DevView dy = matrix2d(dy_obj, fn, "dy");
  DevView y = matrix2d(y_obj, fn, "y");
  require_same_shape(dy, y, fn, "dy", "y");
  DevView given = optional_output(out_obj, dy.shape, Dtype::F32, fn, "out");
  require_no_overlap(given, dy, fn, "out", "dy", false);
  require_no_overlap(given, y, fn, "out", "y", false);
  DeviceCall call(fn, stream);
  call.use(dy, "dy");
  call.use(y, "y");
  DevView dx = call.output(given, dy.shape, Dtype::F32, "out");
  {
    py::gil_scoped_release nogil;
    softmax_backward(dx.f32(), dy.f32(), y.f32(), dy.rows(), dy.cols(), log, call.stream());
  }
  return dx.obj;
}

// Pointers a class-index loss kernel writes and reads.
struct ClassLossArgs {
  float* grad;
  float* row_loss;
  double* row_loss64;
  const float* input;
  const std::int64_t* labels;
  const float* weight;
  index_t rows, cols;
  float scale;
  double class_weight_sum;
  cudaStream_t stream;
};

// Shared by softmax_xent and nll: checks, runs the label check, calls `kernel`,
// reduces. Returns (loss, grad or None, weight_sum).
template <typename Kernel>
py::tuple class_loss(const char* fn, py::handle input_obj, py::handle labels_obj, py::handle weight_obj,
                     std::int64_t ignore_index, const std::string& reduction_s, bool want_grad, float grad_scale,
                     py::object stream, Kernel kernel) {
  const Reduction reduction = parse_reduction(reduction_s, fn);
  DevView input = matrix2d(input_obj, fn, "input");
  const index_t rows = input.rows(), cols = input.cols();
  DevView labels = contiguous(labels_obj, fn, "target", Dtype::I64, false);
  if (labels.shape.size() != 1 || labels.shape[0] != rows)
    value_error(str_cat(fn, ": target must have shape [", rows, "] to match input ", shape_str(input.shape),
                        "; got ", describe(labels_obj)));
  DevView weight = optional_contiguous(weight_obj, fn, "weight", Dtype::F32, false);
  if (!weight.is_none()) require_shape(weight, {cols}, fn, "weight");
  DeviceCall call(fn, stream);
  call.use(input, "input");
  call.use(labels, "target");
  call.use(weight, "weight");

  DevView check = call.empty({3}, Dtype::F64, "label check");
  static_assert(sizeof(LabelCheck) == 3 * sizeof(double), "LabelCheck is three 8-byte words");
  LabelCheck host{};
  {
    py::gil_scoped_release nogil;
    check_labels(reinterpret_cast<LabelCheck*>(check.ptr), labels.i64(), weight.is_none() ? nullptr : weight.f32(),
                 rows, cols, ignore_index, call.stream());
  }
  call.read_back(&host, reinterpret_cast<const void*>(check.ptr), sizeof host);
  if (host.first_bad != kNoBadIndex) {
    std::int64_t label = 0;
    call.read_back(&label, labels.i64() + host.first_bad, sizeof label);
    throw py::index_error(str_cat(fn, ": target[", host.first_bad, "] = ", label, " is out of range for ", cols,
                                  " classes (expected 0 <= label < ", cols, ")"));
  }
  const double wsum = host.weight_sum;
  const bool mean = reduction == Reduction::Mean;

  DevView row_loss, row64, grad, loss;
  if (reduction == Reduction::None) row_loss = call.empty({rows}, Dtype::F32, "loss");
  else {
    row64 = call.empty({rows}, Dtype::F64, "row losses");
    loss = call.empty({}, Dtype::F32, "loss");
  }
  if (want_grad) grad = call.empty({rows, cols}, Dtype::F32, "grad");
  {
    py::gil_scoped_release nogil;
    ClassLossArgs a{grad.is_none() ? nullptr : grad.f32(),
                    row_loss.is_none() ? nullptr : row_loss.f32(),
                    row64.is_none() ? nullptr : row64.f64(),
                    input.f32(),
                    labels.i64(),
                    weight.is_none() ? nullptr : weight.f32(),
                    rows,
                    cols,
                    static_cast<float>(mean ? grad_scale / wsum : static_cast<double>(grad_scale)),
                    host.class_weight_sum,
                    call.stream()};
    kernel(a);
    if (reduction != Reduction::None) {
      const double divisor = mean ? (wsum != 0.0 ? wsum : std::numeric_limits<double>::quiet_NaN()) : 1.0;
      sum_to_scalar(loss.f32(), row64.f64(), rows, divisor, call.stream());
    }
  }
  py::object loss_obj = reduction == Reduction::None ? row_loss.obj : loss.obj;
  py::object g = want_grad ? grad.obj : py::object(py::none());
  return py::make_tuple(loss_obj, g, wsum);
}

py::tuple softmax_xent_binding(py::handle logits, py::handle labels, py::handle weight, std::int64_t ignore_index,
                               float label_smoothing, const std::string& reduction, bool want_grad, float grad_scale,
                               py::object stream) {
  const char* fn = "cross_entropy";
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    value_error(str_cat(fn, ": label_smoothing must be in [0, 1]; got ", label_smoothing));
  return class_loss(fn, logits, labels, weight, ignore_index, reduction, want_grad, grad_scale, stream,
                    [&](const ClassLossArgs& a) {
                      softmax_xent(a.grad, a.row_loss, a.row_loss64, a.input, a.labels, a.weight, a.rows, a.cols,
                                   ignore_index, label_smoothing, a.scale, a.class_weight_sum, a.stream);
                    });
}

py::tuple nll_binding(py::handle logp, py::handle labels, py::handle weight, std::int64_t ignore_index,
                      const std::string& reduction, bool want_grad, float grad_scale, py::object stream) {
  return class_loss("nll_loss", logp, labels, weight, ignore_index, reduction, want_grad, grad_scale, stream,
                    [&](const ClassLossArgs& a) {
                      nll(a.grad, a.row_loss, a.row_loss64, a.input, a.labels, a.weight, a.rows, a.cols,
                          ignore_index, a.scale, a.stream);
                    });
}

py::tuple pointwise_loss_binding(py::handle input_obj, py::handle target_obj, int kind_code, py::handle weight_obj,
                                 const std::string& reduction_s, bool want_grad, float grad_scale,
                                 py::object stream) {
  static const char* names[] = {"mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"};
  if (kind_code < 0 || kind_code > 3)
    value_error(str_cat("pointwise_loss: kind must be 0 (mse), 1 (l1), 2 (bce) or 3 (bce_with_logits); got ",
                        kind_code));
  const char* fn = names[kind_code];
  const auto kind = static_cast<PointwiseLoss>(kind_code);
  const Reduction reduction = parse_reduction(reduction_s, fn);
  DevView input = contiguous(input_obj, fn, "input", Dtype::F32, false);
  DevView target = contiguous(target_obj, fn, "target", Dtype::F32, false);
  require_same_shape(input, target, fn, "input", "target");
  DevView weight = optional_contiguous(weight_obj, fn, "weight", Dtype::F32, false);
  if (!weight.is_none()) require_same_shape(input, weight, fn, "input", "weight");
  DeviceCall call(fn, stream);
  call.use(input, "input");
  call.use(target, "target");
  call.use(weight, "weight");
  const index_t n = input.size;
  if (kind == PointwiseLoss::BCE && n > 0) {
    DevView bad = call.empty({1}, Dtype::I64, "input check");
    std::uint64_t first_bad = kNoBadIndex;
    {
      py::gil_scoped_release nogil;
      check_unit_interval(reinterpret_cast<std::uint64_t*>(bad.ptr), input.f32(), n, call.stream());
    }
    call.read_back(&first_bad, reinterpret_cast<const void*>(bad.ptr), sizeof first_bad);
    if (first_bad != kNoBadIndex) {
      float value = 0.0f;
      call.read_back(&value, input.f32() + first_bad, sizeof value);
      throw std::runtime_error(  // RuntimeError, as torch raises
          str_cat(fn, ": all elements of input should be between 0 and 1; input[", first_bad, "] = ", value));
    }
  }
  DevView elem, grad, loss;
  if (reduction == Reduction::None) elem = call.empty(input.shape, Dtype::F32, "loss");
  else loss = call.empty({}, Dtype::F32, "loss");
  if (want_grad) grad = call.empty(input.shape, Dtype::F32, "grad");
  const index_t parts = pointwise_loss_partials(n);
  DevView partials = call.empty({parts}, Dtype::F64, "partial sums");
  const float scale = reduction == Reduction::Mean && n > 0 ? static_cast<float>(grad_scale / static_cast<double>(n))
                                                             : grad_scale;
  {
    py::gil_scoped_release nogil;
    pointwise_loss(grad.is_none() ? nullptr : grad.f32(), elem.is_none() ? nullptr : elem.f32(), partials.f64(),
                   input.f32(), target.f32(), weight.is_none() ? nullptr : weight.f32(), n, kind, scale,
                   call.stream());
    if (reduction != Reduction::None) {
      const double divisor = reduction == Reduction::Sum ? 1.0
                             : n > 0                     ? static_cast<double>(n)
                                                         : std::numeric_limits<double>::quiet_NaN();
      sum_to_scalar(loss.f32(), partials.f64(), parts, divisor, call.stream());
    }
  }
  py::object loss_obj = reduction == Reduction::None ? elem.obj : loss.obj;
  py::object g = want_grad ? grad.obj : py::object(py::none());
  return py::make_tuple(loss_obj, g);
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("softmax_forward", &softmax_forward_binding, py::arg("x"), py::arg("log") = false,
        py::arg("out") = py::none(), py::kw_only(), py::arg("stream") = py::none(),
        "Row-wise softmax (or log_softmax when log=True) of a C-contiguous float32 [rows, cols] device array.");
  m.def("softmax_backward", &softmax_backward_binding, py::arg("dy"), py::arg("y"), py::arg("log") = false,
        py::arg("out") = py::none(), py::kw_only(), py::arg("stream") = py::none(),
        "Gradient of softmax / log_softmax given its output y.");
  m.def("softmax_xent", &softmax_xent_binding, py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0f, py::arg("reduction") = "mean",
        py::arg("want_grad") = false, py::arg("grad_scale") = 1.0f, py::kw_only(), py::arg("stream") = py::none(),
        "Fused softmax + cross entropy against int64 class indices, as torch.nn.functional.cross_entropy. "
        "Returns (loss, grad_logits or None, weight_sum): loss is a 0-d float32 device array (per-row losses "
        "for reduction='none'), weight_sum a Python float. Labels are checked first (one stream "
        "synchronisation); a bad one raises IndexError.");
  m.def("nll", &nll_binding, py::arg("logp"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("reduction") = "mean", py::arg("want_grad") = false,
        py::arg("grad_scale") = 1.0f, py::kw_only(), py::arg("stream") = py::none(),
        "Negative log-likelihood on log-probabilities, as torch.nn.functional.nll_loss; returns (loss as a 0-d "
        "device array, grad or None, weight_sum).");
  m.def("pointwise_loss", &pointwise_loss_binding, py::arg("input"), py::arg("target"), py::arg("kind"),
        py::arg("weight") = py::none(), py::arg("reduction") = "mean", py::arg("want_grad") = false,
        py::arg("grad_scale") = 1.0f, py::kw_only(), py::arg("stream") = py::none(),
        "Element-wise loss (kind 0 mse, 1 l1, 2 bce, 3 bce_with_logits) with optional per-element weight; "
        "returns (loss as a 0-d device array or per-element losses, grad or None).");
}

}  // namespace fastmlp::cuda::bind
