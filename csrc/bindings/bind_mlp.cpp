// MlpProgram binding: the forward and backward passes of a Sequential MLP, and whole training
// steps, in one native call each. Layers and optimizer updates cross the language boundary as
// classes with named fields (MlpLayer, MlpUpdate), checked here before any kernel runs.
#include <pybind11/stl.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/families.h"
#include "cpu/mlp_step.h"

namespace fastmlp::bind {
namespace {

// One Linear layer of a program, as Python describes it: y = act(x·Wᵀ + b), then dropout.
// weight_grad/bias_grad are where train_step writes the layer's gradients (None: the program
// only runs eagerly, where each backward says where gradients go).
// (Fields in the constructor's order: it initializes them in turn.)
struct PyMlpLayer {
  py::object weight = py::none(), bias = py::none();
  int act = 0;
  float act_param = 0.0f;
  float dropout = 0.0f;
  py::object weight_grad = py::none(), bias_grad = py::none();
};

// An optimizer update applied inside train_step: SGD or Adam(W) over the optimizer's flat
// parameter and gradient buffers (see fastmlp/optim/optimizer.py), with PyTorch's options.
struct PyMlpUpdate {
  std::string kind = "sgd";  // "sgd" or "adam"
  py::object param = py::none(), grad = py::none();
  py::object momentum_buffer = py::none();                                          // SGD
  py::object exp_avg = py::none(), exp_avg_sq = py::none(), max_exp_avg_sq = py::none();  // Adam
  // Python floats, kept as such for the optimizers' own steps (float64 parameters use them
  // unrounded); the float32 program rounds them as the float32 kernels do.
  double lr = 0.0, weight_decay = 0.0;
  bool maximize = false;
  double momentum = 0.0, dampening = 0.0;  // SGD
  bool nesterov = false, first_step = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam
  std::int64_t step = 1;
  bool amsgrad = false, decoupled_weight_decay = false;

  // The update `steps` optimizer steps after this one, when nothing else ran between:
  // Adam's step count advances, and SGD's momentum buffers exist after the first step.
  PyMlpUpdate next(std::int64_t steps) const {
    if (steps < 1) value_error(str_cat("MlpUpdate.next: steps must be >= 1; got ", steps));
    PyMlpUpdate u = *this;
    u.step += steps;
    u.first_step = false;
    return u;
  }
};

// A buffer a program keeps for its life: layers[layer]<what> in errors (".weight", ...).
struct Held {
  View view;
  long layer;
  const char* what;
};

struct PyMlpProgram {
  std::unique_ptr<cpu::MlpProgram> program;
  std::vector<Held> params;  // every layer's W and b, kept alive
  std::vector<Held> grads;   // every layer's dW and db (train_steps writes them)
  bool trainable = false;    // every layer has its gradient buffers

  void add(Footprint& f, bool write_grads) const {
    for (const Held& h : params) f.read(h.view, "layers", h.layer, h.what);
    if (write_grads)
      for (const Held& h : grads) f.write(h.view, "layers", h.layer, h.what);
  }
};

// One forward pass's saved state, and views of the arrays it points into (its input and output).
struct PyMlpTape {
  cpu::MlpTape tape;
  View x, out;
};

std::unique_ptr<PyMlpProgram> make_program(const std::vector<PyMlpLayer>& layers, bool bf16) {
  const char* fn = "MlpProgram";
  if (layers.empty()) value_error(str_cat(fn, ": needs at least one layer"));
  auto p = std::make_unique<PyMlpProgram>();
  std::vector<cpu::MlpLayer> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const PyMlpLayer& in = layers[i];
    const std::string wn = str_cat("layers[", i, "].weight");
    View W = contiguous(in.weight, fn, wn.c_str(), Dtype::F32, false);
    if (W.shape.size() != 2) value_error(str_cat(fn, ": ", wn, " must be 2-D [out, in]; got ", describe(in.weight)));
    const index_t o = W.shape[0], k = W.shape[1];
    if (o < 1 || k < 1) value_error(str_cat(fn, ": ", wn, " must not be empty; got ", describe(in.weight)));
    if (i > 0 && k != out.back().out)
      value_error(str_cat(fn, ": ", wn, " expects ", k, " inputs but the previous layer has ", out.back().out,
                          " outputs"));
    if (!(in.dropout >= 0.0f && in.dropout < 1.0f))
      value_error(str_cat(fn, ": layers[", i, "].dropout must be in [0, 1); got ", in.dropout));
    cpu::MlpLayer L{W.f32(), nullptr, nullptr, nullptr, k, o, act_from_int(in.act, fn), in.act_param, in.dropout};
    const long li = static_cast<long>(i);
    p->params.push_back({std::move(W), li, ".weight"});
    // layers[i]<what>: None, or a float32 array of `shape` that the program keeps
    auto take = [&](const py::object& obj, const char* what, std::vector<index_t> shape, bool grad) -> float* {
      const std::string name = str_cat("layers[", i, "]", what);
      View v = optional_contiguous(obj, fn, name.c_str(), Dtype::F32, grad);
      if (v.is_none()) return nullptr;
      require_shape(v, shape, fn, name.c_str());
      float* data = v.f32();
      (grad ? p->grads : p->params).push_back({std::move(v), li, what});
      return data;
    };
    L.b = take(in.bias, ".bias", {o}, false);
    L.dW = take(in.weight_grad, ".weight_grad", {o, k}, true);
    if (!in.bias_grad.is_none() && !L.b)
      value_error(str_cat(fn, ": layers[", i, "].bias_grad must be None: layer ", i, " has no bias"));
    L.db = take(in.bias_grad, ".bias_grad", {o}, true);
    out.push_back(L);
  }
  // Every gradient buffer a step writes must be apart from every other one and from every
  // parameter (of any layer).
  Footprint f;
  p->add(f, true);
  f.check(fn);
  // A dW needs its W and a db its b: as many gradient buffers as parameters means all of them.
  p->trainable = p->grads.size() == p->params.size();
  p->program = std::make_unique<cpu::MlpProgram>(std::move(out), bf16);
  return p;
}

// Whether the whole of [p, p + n) lies in the flat buffer v.
bool inside(const float* p, index_t n, const View& v) {
  const float* base = v.f32();
  return p >= base && p + n <= base + v.shape[0];
}

// The checked native form of an update.
// `keep` holds its views for the duration of the call, and `writes` gets them as written buffers.
cpu::MlpUpdate parse_update(py::handle obj, const PyMlpProgram& prog, const char* fn, std::vector<View>& keep,
                            Footprint& writes) {
  cpu::MlpUpdate u;
  if (obj.is_none()) return u;
  if (!py::isinstance<PyMlpUpdate>(obj)) type_error(fn, "update", "an MlpUpdate or None", obj);
  const PyMlpUpdate& in = obj.cast<const PyMlpUpdate&>();
  const bool adam = in.kind == "adam";
  if (!adam && in.kind != "sgd") value_error(str_cat(fn, ": update.kind must be 'sgd' or 'adam'; got '", in.kind, "'"));
  keep.reserve(5);  // (never reallocated: `writes` points at its views)
  // A 1-D float32 buffer of update.param's shape (or None where `optional`), written by the step.
  auto take = [&](const py::object& o, const char* name, bool optional) -> float* {
    View& v = keep.emplace_back(optional ? optional_contiguous(o, fn, name, Dtype::F32, true)
                                         : contiguous(o, fn, name, Dtype::F32, true));
    writes.write(v, name);
    if (v.is_none()) return nullptr;
    if (v.shape.size() != 1) value_error(str_cat(fn, ": ", name, " must be 1-D; got ", shape_str(v.shape)));
    if (keep.size() > 1) require_shape(v, keep[0].shape, fn, name);
    return v.f32();
  };
  u.param = take(in.param, "update.param", false);
  u.grad = take(in.grad, "update.grad", false);
  if (adam) {
    u.kind = cpu::MlpUpdate::Kind::Adam;
    u.state[0] = take(in.exp_avg, "update.exp_avg", false);
    u.state[1] = take(in.exp_avg_sq, "update.exp_avg_sq", false);
    u.state[2] = take(in.max_exp_avg_sq, "update.max_exp_avg_sq", true);
    u.adam = cpu::AdamOptions{static_cast<float>(in.lr),    static_cast<float>(in.beta1),
                              static_cast<float>(in.beta2), static_cast<float>(in.eps),
                              static_cast<float>(in.weight_decay), in.decoupled_weight_decay,
                              in.amsgrad, in.maximize, in.step};
    if (in.amsgrad != (u.state[2] != nullptr))
      value_error(str_cat(fn, ": update.max_exp_avg_sq must be given exactly when amsgrad is on"));
    if (in.step < 1) value_error(str_cat(fn, ": update.step must be >= 1; got ", in.step));
  } else {
    u.kind = cpu::MlpUpdate::Kind::Sgd;
    u.state[0] = take(in.momentum_buffer, "update.momentum_buffer", true);
    u.sgd = cpu::SgdOptions{static_cast<float>(in.lr), static_cast<float>(in.momentum),
                            static_cast<float>(in.dampening), static_cast<float>(in.weight_decay),
                            in.nesterov, in.maximize, in.first_step};
    if (u.sgd.momentum != 0.0f && !u.state[0])
      value_error(str_cat(fn, ": SGD with momentum needs update.momentum_buffer"));
    if (u.sgd.momentum == 0.0f) u.state[0] = nullptr;
  }
  const auto& layers = prog.program->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const cpu::MlpLayer& L = layers[i];
    const bool ok = inside(L.W, L.out * L.in, keep[0]) && L.dW - u.grad == L.W - u.param &&
                    (!L.b || (inside(L.b, L.out, keep[0]) && L.db - u.grad == L.b - u.param));
    if (!ok)
      value_error(str_cat(fn, ": layer ", i, "'s parameters and gradients do not lie at matching offsets in "
                          "update.param and update.grad"));
  }
  return u;
}

// Runs consecutive steps over the rows of x [rows, in0] and labels [rows]: step i takes the
// next sizes[i] rows and the dropout streams (seeds, offsets)[i·d .. i·d + d), d = dropout
// layers. With an update, step i applies it as the i-th of consecutive optimizer steps: Adam's
// step count advances by one per step, and SGD's first-step flag holds for step 0 only.
// Returns the per-step (mean loss, rows predicted right) as two arrays.
py::tuple train_steps(
    PyMlpProgram& self, py::handle x_obj, py::handle y_obj, const std::vector<index_t>& sizes,
    const std::vector<std::uint64_t>& seeds, const std::vector<std::uint64_t>& offsets, py::handle weight_obj,
    std::int64_t ignore_index, float label_smoothing, py::handle update_obj) {
  const char* fn = "MlpProgram.train_steps";
  const cpu::MlpProgram& s = *self.program;
  if (!self.trainable)
    value_error(str_cat(fn, ": this program has no gradient buffers (give every layer weight_grad, and bias_grad "
                        "where it has a bias)"));
  if (s.layers().back().act != Act::Identity || s.layers().back().dropout != 0.0f)
    value_error(str_cat(fn, ": the last layer produces the logits: it must have no activation or dropout"));
  const index_t in0 = s.layers().front().in, classes = s.layers().back().out;
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  if (x.shape.size() != 2 || x.shape[1] != in0)
    value_error(str_cat(fn, ": x must be [batch, ", in0, "]; got ", describe(x_obj)));
  index_t rows = 0;
  for (size_t i = 0; i < sizes.size() && rows <= x.shape[0]; ++i) {
    if (sizes[i] < 1 || sizes[i] > x.shape[0])
      value_error(str_cat(fn, ": batch ", i, " has ", sizes[i], " rows; x has ", x.shape[0]));
    rows += sizes[i];
  }
  if (sizes.empty() || rows != x.shape[0])
    value_error(str_cat(fn, ": the batch sizes must add up to the rows of x (", x.shape[0], ")"));
  View y = contiguous(y_obj, fn, "target", Dtype::I64, false);
  require_labels(y, rows, classes, ignore_index, fn, "target");
  const index_t nd = s.dropout_layers(), steps = static_cast<index_t>(sizes.size());
  if (static_cast<index_t>(seeds.size()) != nd * steps || static_cast<index_t>(offsets.size()) != nd * steps)
    value_error(str_cat(fn, ": needs one (seed, offset) per dropout layer (", nd, ") and step (", steps, "); got ",
                        seeds.size(), " and ", offsets.size()));
  View w = optional_contiguous(weight_obj, fn, "weight", Dtype::F32, false);
  if (!w.is_none()) require_shape(w, {classes}, fn, "weight");
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    value_error(str_cat(fn, ": label_smoothing must be in [0, 1]; got ", label_smoothing));
  // What the steps write (the gradients; the update's buffers, which hold them) must lie apart
  // from their inputs.
  Footprint grads;
  grads.read(x, "x");
  grads.read(w, "weight");
  Footprint updated = grads;  // (the same reads)
  self.add(grads, true);
  grads.check(fn);
  cpu::MlpLoss loss{w.is_none() ? nullptr : w.f32(), ignore_index, label_smoothing};
  std::vector<View> update_views;
  cpu::MlpUpdate update = parse_update(update_obj, self, fn, update_views, updated);
  updated.check(fn);
  py::array_t<double> losses(steps);
  py::array_t<std::int64_t> correct(steps);
  double* lp = losses.mutable_data();
  std::int64_t* cp = correct.mutable_data();
  {
    py::gil_scoped_release nogil;
    const float* xp = x.f32();
    const std::int64_t* yp = y.i64();
    for (index_t i = 0; i < steps; ++i) {
      update.keep_weight_grads = i + 1 == steps;  // only the last step's gradients are seen
      const cpu::MlpStepResult r =
          self.program->train_step(xp, yp, sizes[i], seeds.data() + i * nd, offsets.data() + i * nd, loss, update);
      lp[i] = r.loss;
      cp[i] = r.correct;
      xp += sizes[i] * in0;
      yp += sizes[i];
      ++update.adam.step;
      update.sgd.first_step = false;
    }
  }
  return py::make_tuple(losses, correct);
}

// y = the program's output for x [batch, in0], a new array; `tape` keeps what backward needs.
py::array_t<float> forward(PyMlpProgram& self, py::handle x_obj, const std::vector<std::uint64_t>& seeds,
                           const std::vector<std::uint64_t>& offsets, PyMlpTape& tape) {
  const char* fn = "MlpProgram.forward";
  const auto& layers = self.program->layers();
  const index_t in0 = layers.front().in, out_n = layers.back().out;
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  if (x.shape.size() != 2 || x.shape[1] != in0 || x.shape[0] < 1)
    value_error(str_cat(fn, ": x must be [batch, ", in0, "] with batch >= 1; got ", describe(x_obj)));
  const int nd = self.program->dropout_layers();
  if (static_cast<int>(seeds.size()) != nd || static_cast<int>(offsets.size()) != nd)
    value_error(str_cat(fn, ": needs one (seed, offset) per dropout layer (", nd, "); got ", seeds.size(), " and ",
                        offsets.size()));
  const index_t batch = x.shape[0];
  py::array_t<float> out = new_f32({batch, out_n});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    self.program->forward(tape.tape, x.f32(), batch, seeds.data(), offsets.data(), op);
  }
  tape.x = std::move(x);
  tape.out = View{out, op, {batch, out_n}, batch * out_n};
  return out;
}

// The backward pass over `tape` from g = ∂loss/∂y: layer i's weight gradient goes to grads[2i]
// and its bias gradient to grads[2i + 1] (None: not wanted), each added to it when
// accumulate[j], else overwriting it; returns ∂loss/∂x when need_dx, else None.
py::object backward(PyMlpProgram& self, PyMlpTape& tape, py::handle g_obj, py::sequence grads,
                    const std::vector<bool>& accumulate, bool need_dx) {
  const char* fn = "MlpProgram.backward";
  const auto& layers = self.program->layers();
  if (tape.tape.program != self.program->id())
    value_error(str_cat(fn, ": the tape was not filled by this program's forward"));
  const index_t batch = tape.tape.batch, in0 = layers.front().in;
  View g = contiguous(g_obj, fn, "grad", Dtype::F32, false);
  require_shape(g, {batch, layers.back().out}, fn, "grad");
  const size_t n = 2 * layers.size();
  if (static_cast<size_t>(py::len(grads)) != n || accumulate.size() != n)
    value_error(str_cat(fn, ": grads and accumulate need two entries per layer (", n, ")"));
  std::vector<cpu::MlpGradDest> dest(layers.size());
  std::vector<View> views(n);
  Footprint f;  // every destination, apart from the others and from what the pass reads
  for (size_t j = 0; j < n; ++j) {
    const cpu::MlpLayer& L = layers[j / 2];
    const bool bias = j % 2 == 1;
    char name[32];  // (formatted on the stack: this runs at every backward pass)
    std::snprintf(name, sizeof name, "grads[%zu]", j);
    View& v = views[j] = optional_contiguous(grads[j], fn, name, Dtype::F32, true);
    f.write(v, "grads", static_cast<long>(j));
    if (v.is_none()) continue;
    if (bias && !L.b) value_error(str_cat(fn, ": ", name, " must be None: layer ", j / 2, " has no bias"));
    require_shape(v, bias ? std::vector<index_t>{L.out} : std::vector<index_t>{L.out, L.in}, fn, name);
    cpu::MlpGradDest& D = dest[j / 2];
    (bias ? D.db : D.dW) = v.f32();
    (bias ? D.acc_b : D.acc_w) = accumulate[j];
  }
  f.read(tape.x, "the forward's x");
  f.read(tape.out, "the forward's output");
  f.read(g, "grad");
  self.add(f, false);
  f.check(fn);
  py::array_t<float> dx;
  float* dxp = need_dx ? (dx = new_f32({batch, in0})).mutable_data() : nullptr;
  {
    py::gil_scoped_release nogil;
    self.program->backward(tape.tape, g.f32(), dest.data(), dxp);
  }
  return need_dx ? py::object(std::move(dx)) : py::none();
}

}  // namespace

void bind_mlp(py::module_& m) {
  py::class_<PyMlpLayer>(m, "MlpLayer", "One Linear layer of an MlpProgram: y = act(x·Wᵀ + b), then dropout.")
      .def(py::init<py::object, py::object, int, float, float, py::object, py::object>(),
           py::arg("weight"), py::arg("bias") = py::none(), py::arg("act") = 0, py::arg("act_param") = 0.0f,
           py::arg("dropout") = 0.0f, py::arg("weight_grad") = py::none(), py::arg("bias_grad") = py::none())
      .def_readwrite("weight", &PyMlpLayer::weight)
      .def_readwrite("bias", &PyMlpLayer::bias)
      .def_readwrite("weight_grad", &PyMlpLayer::weight_grad)
      .def_readwrite("bias_grad", &PyMlpLayer::bias_grad)
      .def_readwrite("act", &PyMlpLayer::act)
      .def_readwrite("act_param", &PyMlpLayer::act_param)
      .def_readwrite("dropout", &PyMlpLayer::dropout);
  py::class_<PyMlpUpdate>(m, "MlpUpdate",
                          "An SGD or Adam(W) update over an optimizer's flat buffers, applied inside "
                          "MlpProgram.train_step as soon as each layer's gradients are final.")
      .def(py::init<>())
      .def_readwrite("kind", &PyMlpUpdate::kind)
      .def_readwrite("param", &PyMlpUpdate::param)
      .def_readwrite("grad", &PyMlpUpdate::grad)
      .def_readwrite("momentum_buffer", &PyMlpUpdate::momentum_buffer)
      .def_readwrite("exp_avg", &PyMlpUpdate::exp_avg)
      .def_readwrite("exp_avg_sq", &PyMlpUpdate::exp_avg_sq)
      .def_readwrite("max_exp_avg_sq", &PyMlpUpdate::max_exp_avg_sq)
      .def_readwrite("lr", &PyMlpUpdate::lr)
      .def_readwrite("weight_decay", &PyMlpUpdate::weight_decay)
      .def_readwrite("maximize", &PyMlpUpdate::maximize)
      .def_readwrite("momentum", &PyMlpUpdate::momentum)
      .def_readwrite("dampening", &PyMlpUpdate::dampening)
      .def_readwrite("nesterov", &PyMlpUpdate::nesterov)
      .def_readwrite("first_step", &PyMlpUpdate::first_step)
      .def_readwrite("beta1", &PyMlpUpdate::beta1)
      .def_readwrite("beta2", &PyMlpUpdate::beta2)
      .def_readwrite("eps", &PyMlpUpdate::eps)
      .def_readwrite("step", &PyMlpUpdate::step)
      .def_readwrite("amsgrad", &PyMlpUpdate::amsgrad)
      .def_readwrite("decoupled_weight_decay", &PyMlpUpdate::decoupled_weight_decay)
      .def("next", &PyMlpUpdate::next, py::arg("steps") = 1,
           "The update `steps` optimizer steps later (Adam's step + steps; SGD's first_step off).");
  py::class_<PyMlpTape>(m, "MlpTape", "What one MlpProgram.forward saves for its backward pass (reusable).")
      .def(py::init<>());
  py::class_<PyMlpProgram>(m, "MlpProgram",
                           "The Linear/activation/Dropout layers of a Sequential as one native program: "
                           "forward into a tape and backward in one call each, or whole training steps "
                           "(forward, softmax cross-entropy, backward and optional optimizer update).")
      .def(py::init(&make_program), py::arg("layers"), py::arg("bf16") = false,
           "layers: a list of MlpLayer; bf16: every product on the bfloat16 GEMM (operands rounded to "
           "bfloat16, float32 accumulation), as under fastmlp.autocast.")
      .def("forward", &forward, py::arg("x"), py::arg("seeds"), py::arg("offsets"), py::arg("tape"),
           "y for x [batch, in]; dropout layer j uses stream (seeds[j], offsets[j]); `tape` receives what "
           "backward needs.")
      .def("backward", &backward, py::arg("tape"), py::arg("grad"), py::arg("grads"), py::arg("accumulate"),
           py::arg("need_dx"),
           "Gradients from grad = dloss/dy over a tape of this program: layer i's weight gradient into "
           "grads[2*i], its bias gradient into grads[2*i+1] (None: not wanted; added to when accumulate[j]); "
           "returns dloss/dx when need_dx, else None.")
      .def("train_steps", &train_steps, py::arg("x"), py::arg("target"), py::arg("sizes"), py::arg("seeds"),
           py::arg("offsets"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
           py::arg("label_smoothing") = 0.0f, py::arg("update") = py::none(),
           "Consecutive training steps over the rows of x, each a forward/backward into the layers' "
           "weight_grad/bias_grad and, with `update`, the optimizer step: step i takes the next sizes[i] "
           "rows and dropout streams (seeds, offsets)[i*d:(i+1)*d], and is the i-th of consecutive "
           "optimizer steps (as update.next(i) gives them). Returns (losses, rows predicted right) as "
           "arrays, one entry per step.")
      .def_property_readonly("dropout_layers", [](const PyMlpProgram& s) { return s.program->dropout_layers(); })
      .def_property_readonly("bf16", [](const PyMlpProgram& s) { return s.program->bf16(); });
}

}  // namespace fastmlp::bind
