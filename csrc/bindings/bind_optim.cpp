// Multi-tensor optimizer step bindings: one call updates every tensor in the lists.
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {
namespace {

// A list of arrays, checked: C-contiguous float32, each the shape of params[i].
struct TensorList {
  std::vector<View> views;
  std::vector<float*> ptrs;
};

TensorList tensor_list(py::handle obj, const char* fn, const char* arg, bool writable, index_t expected,
                       const TensorList* like) {
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    type_error(fn, arg, "a list of float32 arrays", obj);
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  const index_t n = static_cast<index_t>(py::len(seq));
  if (expected >= 0 && n != expected)
    value_error(str_cat(fn, ": '", arg, "' has ", n, " tensors but 'params' has ", expected));
  TensorList out;
  out.views.reserve(n);
  out.ptrs.reserve(n);
  for (index_t i = 0; i < n; ++i) {
    // Plain concatenation: a string stream per tensor would cost more than the checks.
    const std::string name = std::string(arg) + "[" + std::to_string(i) + "]";
    View v = contiguous(seq[i], fn, name.c_str(), Dtype::F32, writable);
    if (like && v.shape != like->views[i].shape)
      value_error(str_cat(fn, ": ", name, " has shape ", shape_str(v.shape), " but params[", i, "] has ",
                          shape_str(like->views[i].shape)));
    out.ptrs.push_back(v.f32());
    out.views.push_back(std::move(v));
  }
  return out;
}

// Outputs (everything written) must not overlap each other or any gradient; gradients may
// share memory with each other.
void check_disjoint(const char* fn, std::initializer_list<std::pair<const TensorList*, const char*>> outs,
                    const TensorList& grads) {
  Footprint f;
  for (const auto& [list, name] : outs)
    for (size_t i = 0; i < list->views.size(); ++i) f.write(list->views[i], name, static_cast<long>(i));
  for (size_t i = 0; i < grads.views.size(); ++i) f.read(grads.views[i], "grads", static_cast<long>(i));
  f.check(fn);
}

void check_hyper(bool ok, const char* fn, const char* what, double value) {
  if (!ok) value_error(str_cat(fn, ": invalid ", what, ": ", value));
}

void sgd_step(py::handle params_obj, py::handle grads_obj, py::handle bufs_obj, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool maximize, bool first_step) {
  const char* fn = "sgd_step";
  check_hyper(lr >= 0.0f, fn, "learning rate", lr);
  check_hyper(momentum >= 0.0f, fn, "momentum value", momentum);
  check_hyper(weight_decay >= 0.0f, fn, "weight_decay value", weight_decay);
  if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
    value_error(str_cat(fn, ": Nesterov momentum requires a momentum and zero dampening"));
  TensorList params = tensor_list(params_obj, fn, "params", true, -1, nullptr);
  const index_t n = static_cast<index_t>(params.views.size());
  TensorList grads = tensor_list(grads_obj, fn, "grads", false, n, &params);
  TensorList bufs;
  if (momentum != 0.0f) {
    if (bufs_obj.is_none()) value_error(str_cat(fn, ": momentum != 0 needs 'momentum_buffers'"));
    bufs = tensor_list(bufs_obj, fn, "momentum_buffers", true, n, &params);
  }
  check_disjoint(fn, {{&params, "params"}, {&bufs, "momentum_buffers"}}, grads);
  std::vector<index_t> sizes(n);
  for (index_t i = 0; i < n; ++i) sizes[i] = params.views[i].size;
  const cpu::SgdOptions opt{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
  py::gil_scoped_release nogil;
  cpu::kernels().sgd_step(params.ptrs.data(), momentum != 0.0f ? bufs.ptrs.data() : nullptr,
                          const_cast<const float* const*>(grads.ptrs.data()), sizes.data(), n, opt);
}

void adam_step(py::handle params_obj, py::handle grads_obj, py::handle m_obj, py::handle v_obj,
               py::handle vmax_obj, float lr, float beta1, float beta2, float eps, float weight_decay,
               std::int64_t step, bool amsgrad, bool maximize, bool decoupled) {
  const char* fn = decoupled ? "adamw_step" : "adam_step";
  check_hyper(lr >= 0.0f, fn, "learning rate", lr);
  check_hyper(eps >= 0.0f, fn, "epsilon value", eps);
  check_hyper(beta1 >= 0.0f && beta1 < 1.0f, fn, "beta parameter at index 0", beta1);
  check_hyper(beta2 >= 0.0f && beta2 < 1.0f, fn, "beta parameter at index 1", beta2);
  check_hyper(weight_decay >= 0.0f, fn, "weight_decay value", weight_decay);
  check_hyper(step >= 1, fn, "step (must be >= 1)", static_cast<double>(step));
  TensorList params = tensor_list(params_obj, fn, "params", true, -1, nullptr);
  const index_t n = static_cast<index_t>(params.views.size());
  TensorList grads = tensor_list(grads_obj, fn, "grads", false, n, &params);
  TensorList m = tensor_list(m_obj, fn, "exp_avgs", true, n, &params);
  TensorList v = tensor_list(v_obj, fn, "exp_avg_sqs", true, n, &params);
  TensorList vmax;
  if (amsgrad) {
    if (vmax_obj.is_none()) value_error(str_cat(fn, ": amsgrad=True needs 'max_exp_avg_sqs'"));
    vmax = tensor_list(vmax_obj, fn, "max_exp_avg_sqs", true, n, &params);
  }
  check_disjoint(fn, {{&params, "params"}, {&m, "exp_avgs"}, {&v, "exp_avg_sqs"}, {&vmax, "max_exp_avg_sqs"}},
                 grads);
  std::vector<index_t> sizes(n);
  for (index_t i = 0; i < n; ++i) sizes[i] = params.views[i].size;
  const cpu::AdamOptions opt{lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize, step};
  py::gil_scoped_release nogil;
  cpu::kernels().adam_step(params.ptrs.data(), m.ptrs.data(), v.ptrs.data(),
                           amsgrad ? vmax.ptrs.data() : nullptr,
                           const_cast<const float* const*>(grads.ptrs.data()), sizes.data(), n, opt);
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
        py::arg("lr"), py::arg("momentum") = 0.0f, py::arg("dampening") = 0.0f, py::arg("weight_decay") = 0.0f,
        py::arg("nesterov") = false, py::arg("maximize") = false, py::arg("first_step") = false,
        "One torch.optim.SGD step over lists of float32 arrays, in place. first_step initialises the "
        "momentum buffers to the first update direction.");
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
        py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("step"), py::arg("amsgrad") = false,
        py::arg("maximize") = false, py::arg("decoupled_weight_decay") = false,
        "One torch.optim.Adam (or AdamW, with decoupled_weight_decay) step over lists of float32 "
        "arrays, in place; `step` counts this update (1 on the first).");
}

}  // namespace fastmlp::bind
