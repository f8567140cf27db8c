// MlpStepper binding: whole forward/loss/backward passes of a Sequential MLP in one call.
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>

#include "bindings/args.h"
#include "bindings/families.h"
#include "cpu/mlp_step.h"

namespace fastmlp::bind {
namespace {

// Keeps the parameter and gradient arrays alive while the stepper points into them.
struct PyMlpStepper {
  cpu::MlpStepper stepper;
  std::vector<View> keep;
};

// The layers of a stepper, (W, b, dW, db, act, act_param, dropout) each, or of a chain,
// (W, b, act, act_param, dropout) each (with_grads false); `keep` receives the views.
std::vector<cpu::MlpLayer> parse_layers(py::sequence layers, const char* fn, bool with_grads,
                                        std::vector<View>& keep) {
  const index_t n = static_cast<index_t>(py::len(layers));
  if (n < 1) value_error(str_cat(fn, ": needs at least one layer"));
  const size_t fields = with_grads ? 7 : 5;
  const int a = with_grads ? 4 : 2;  // index of act in the tuple
  std::vector<cpu::MlpLayer> out;
  index_t prev_out = -1;
  for (index_t i = 0; i < n; ++i) {
    py::handle item = layers[i];
    if (!py::isinstance<py::tuple>(item) || py::len(item) != fields)
      value_error(str_cat(fn, ": layer ", i, " must be ",
                          with_grads ? "(W, b, dW, db, act, act_param, dropout)" : "(W, b, act, act_param, dropout)"));
    py::tuple t = py::reinterpret_borrow<py::tuple>(item);
    const std::string wn = str_cat("layers[", i, "].W"), bn = str_cat("layers[", i, "].b"),
                      dwn = str_cat("layers[", i, "].dW"), dbn = str_cat("layers[", i, "].db");
    View W = contiguous(t[0], fn, wn.c_str(), Dtype::F32, false);
    if (W.shape.size() != 2) value_error(str_cat(fn, ": ", wn, " must be 2-D [out, in]; got ", describe(t[0])));
    const index_t o = W.shape[0], in = W.shape[1];
    if (o < 1 || in < 1) value_error(str_cat(fn, ": ", wn, " must not be empty; got ", describe(t[0])));
    if (prev_out >= 0 && in != prev_out)
      value_error(str_cat(fn, ": ", wn, " expects ", in, " inputs but the previous layer has ", prev_out, " outputs"));
    cpu::MlpLayer L;
    L.W = W.f32();
    L.in = in;
    L.out = o;
    View dW;
    if (with_grads) {
      dW = contiguous(t[2], fn, dwn.c_str(), Dtype::F32, true);
      require_shape(dW, {o, in}, fn, dwn.c_str());
      require_no_overlap(dW, W, fn, dwn.c_str(), wn.c_str(), false);
      L.dW = dW.f32();
    }
    if (!t[1].is_none()) {
      View b = contiguous(t[1], fn, bn.c_str(), Dtype::F32, false);
      require_shape(b, {o}, fn, bn.c_str());
      L.b = b.f32();
      if (with_grads) {
        View db = contiguous(t[3], fn, dbn.c_str(), Dtype::F32, true);
        require_shape(db, {o}, fn, dbn.c_str());
        require_no_overlap(db, b, fn, dbn.c_str(), bn.c_str(), false);
        require_no_overlap(db, dW, fn, dbn.c_str(), dwn.c_str(), false);
        L.db = db.f32();
        keep.push_back(std::move(db));
      }
      keep.push_back(std::move(b));
    }
    L.act = act_from_int(t[a].cast<int>(), fn);
    L.act_param = t[a + 1].cast<float>();
    L.dropout = t[a + 2].cast<float>();
    if (!(L.dropout >= 0.0f && L.dropout < 1.0f))
      value_error(str_cat(fn, ": layer ", i, " dropout must be in [0, 1); got ", L.dropout));
    keep.push_back(std::move(W));
    if (with_grads) keep.push_back(std::move(dW));
    out.push_back(L);
    prev_out = o;
  }
  return out;
}

PyMlpStepper* make_stepper(py::sequence layers, index_t max_batch) {
  const char* fn = "MlpStepper";
  if (max_batch < 1) value_error(str_cat(fn, ": max_batch must be >= 1; got ", max_batch));
  std::vector<View> keep;
  std::vector<cpu::MlpLayer> out = parse_layers(layers, fn, true, keep);
  if (out.back().act != Act::Identity || out.back().dropout != 0.0f)
    value_error(str_cat(fn, ": the last layer produces the logits: no activation or dropout"));
  return new PyMlpStepper{cpu::MlpStepper(std::move(out), max_batch), std::move(keep)};
}

// Whether the whole of [p, p + n) lies in the flat buffer v.
bool inside(const float* p, index_t n, const View& v) {
  const float* base = v.f32();
  return p >= base && p + n <= base + v.shape[0];
}

// The optimizer update from Python:
//   ("sgd", param, grad, momentum_buf or None, lr, momentum, dampening, weight_decay, nesterov, maximize,
//    first_step)
//   ("adam", param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq or None, lr, beta1, beta2, eps, weight_decay,
//    step, amsgrad, maximize, decoupled_weight_decay)
// param and grad are the flat buffers every layer's W, b, dW, db must lie in at equal offsets; the
// state buffers are float32 vectors of the same length. `keep` holds the checked views.
cpu::MlpUpdate parse_update(py::handle obj, const cpu::MlpStepper& s, std::vector<View>& keep) {
  const char* fn = "MlpStepper.train_step";
  cpu::MlpUpdate u;
  if (obj.is_none()) return u;
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) < 1)
    type_error(fn, "update", "a tuple ('sgd' or 'adam', ...) or None", obj);
  py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
  const std::string kind = py::cast<std::string>(t[0]);
  const bool adam = kind == "adam";
  if (!adam && kind != "sgd") value_error(str_cat(fn, ": update kind must be 'sgd' or 'adam'; got '", kind, "'"));
  const size_t want = adam ? 15 : 11;
  if (py::len(t) != want) value_error(str_cat(fn, ": a '", kind, "' update has ", want, " fields; got ", py::len(t)));
  const int states = adam ? 3 : 1;
  static const char* const names[] = {"update.param", "update.grad", "update.state0", "update.state1",
                                      "update.state2"};
  keep.clear();
  for (int i = 0; i < 2 + states; ++i) {
    const bool optional = i == 1 + states;  // momentum buffer (SGD) or max_exp_avg_sq (Adam)
    View v = optional ? optional_contiguous(t[1 + i], fn, names[i], Dtype::F32, true)
                      : contiguous(t[1 + i], fn, names[i], Dtype::F32, true);
    if (!v.is_none()) {
      if (v.shape.size() != 1) value_error(str_cat(fn, ": ", names[i], " must be 1-D; got ", shape_str(v.shape)));
      if (i > 0) require_shape(v, keep[0].shape, fn, names[i]);
      for (const View& other : keep)
        if (!other.is_none()) require_no_overlap(v, other, fn, names[i], "another update buffer", false);
    }
    keep.push_back(v);
  }
  const View& param = keep[0];
  const View& grad = keep[1];
  for (size_t i = 0; i < s.layers().size(); ++i) {
    const cpu::MlpLayer& L = s.layers()[i];
    const index_t nw = L.out * L.in;
    const bool ok = inside(L.W, nw, param) && L.dW - grad.f32() == L.W - param.f32() &&
                    (!L.b || (inside(L.b, L.out, param) && L.db - grad.f32() == L.b - param.f32()));
    if (!ok)
      value_error(str_cat(fn, ": layer ", i, "'s parameters and gradients do not lie at matching offsets in "
                          "update.param and update.grad"));
  }
  u.param = param.f32();
  u.grad = grad.f32();
  for (int i = 0; i < states; ++i) u.state[i] = keep[2 + i].is_none() ? nullptr : keep[2 + i].f32();
  if (adam) {
    u.kind = cpu::MlpUpdate::Kind::Adam;
    u.adam = cpu::AdamOptions{py::cast<float>(t[6]),  py::cast<float>(t[7]),  py::cast<float>(t[8]),
                              py::cast<float>(t[9]),  py::cast<float>(t[10]), py::cast<bool>(t[14]),
                              py::cast<bool>(t[12]), py::cast<bool>(t[13]), py::cast<std::int64_t>(t[11])};
    if (u.adam.amsgrad != (u.state[2] != nullptr))
      value_error(str_cat(fn, ": update.state2 (max_exp_avg_sq) must be given exactly when amsgrad is on"));
    if (u.adam.step < 1) value_error(str_cat(fn, ": update step must be >= 1; got ", u.adam.step));
  } else {
    u.kind = cpu::MlpUpdate::Kind::Sgd;
    u.sgd = cpu::SgdOptions{py::cast<float>(t[4]), py::cast<float>(t[5]), py::cast<float>(t[6]),
                            py::cast<float>(t[7]), py::cast<bool>(t[8]), py::cast<bool>(t[9]),
                            py::cast<bool>(t[10])};
    if (u.sgd.momentum != 0.0f && !u.state[0])
      value_error(str_cat(fn, ": SGD with momentum needs update.state0 (the momentum buffer)"));
    if (u.sgd.momentum == 0.0f) u.state[0] = nullptr;
  }
  return u;
}

// Runs consecutive steps over the rows of x [rows, in0] and labels [rows]: step i takes the
// next sizes[i] rows and the dropout streams (seeds, offsets)[i·d .. i·d + d), d = dropout
// layers. With an update, step i applies it as the i-th of consecutive optimizer steps: Adam's
// step count advances by one per step, and SGD's first-step flag holds for step 0 only.
// Returns the per-step (mean loss, rows predicted right) as two arrays.
std::pair<py::array_t<double>, py::array_t<std::int64_t>> run_steps(
    PyMlpStepper& self, const char* fn, py::handle x_obj, py::handle y_obj, const std::vector<index_t>& sizes,
    const std::vector<std::uint64_t>& seeds, const std::vector<std::uint64_t>& offsets, py::handle weight_obj,
    std::int64_t ignore_index, float label_smoothing, py::handle update_obj) {
  const cpu::MlpStepper& s = self.stepper;
  const index_t in0 = s.layers().front().in, classes = s.layers().back().out;
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  if (x.shape.size() != 2 || x.shape[1] != in0)
    value_error(str_cat(fn, ": x must be [batch, ", in0, "]; got ", describe(x_obj)));
  index_t rows = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 1 || sizes[i] > s.max_batch())
      value_error(str_cat(fn, ": batch ", i, " has ", sizes[i], " rows; this stepper takes 1 to ", s.max_batch()));
    rows += sizes[i];
  }
  if (sizes.empty() || rows != x.shape[0])
    value_error(str_cat(fn, ": the batch sizes must add up to the rows of x (", x.shape[0], "); they add up to ",
                        rows));
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
  cpu::MlpLoss loss{w.is_none() ? nullptr : w.f32(), ignore_index, label_smoothing};
  std::vector<View> update_views;
  cpu::MlpUpdate update = parse_update(update_obj, s, update_views);
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
          self.stepper.train_step(xp, yp, sizes[i], seeds.data() + i * nd, offsets.data() + i * nd, loss, update);
      lp[i] = r.loss;
      cp[i] = r.correct;
      xp += sizes[i] * in0;
      yp += sizes[i];
      ++update.adam.step;
      update.sgd.first_step = false;
    }
  }
  return {losses, correct};
}

py::tuple train_step(PyMlpStepper& self, py::handle x_obj, py::handle y_obj, const std::vector<std::uint64_t>& seeds,
                     const std::vector<std::uint64_t>& offsets, py::handle weight_obj, std::int64_t ignore_index,
                     float label_smoothing, py::handle update_obj) {
  const char* fn = "MlpStepper.train_step";
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  const index_t batch = x.shape.size() == 2 ? x.shape[0] : 0;  // run_steps reports any other shape
  auto r = run_steps(self, fn, x_obj, y_obj, {batch}, seeds, offsets, weight_obj, ignore_index, label_smoothing,
                     update_obj);
  return py::make_tuple(r.first.at(0), r.second.at(0));
}

py::tuple train_steps(PyMlpStepper& self, py::handle x_obj, py::handle y_obj, const std::vector<index_t>& sizes,
                      const std::vector<std::uint64_t>& seeds, const std::vector<std::uint64_t>& offsets,
                      py::handle weight_obj, std::int64_t ignore_index, float label_smoothing, py::handle update_obj) {
  auto r = run_steps(self, "MlpStepper.train_steps", x_obj, y_obj, sizes, seeds, offsets, weight_obj, ignore_index,
                     label_smoothing, update_obj);
  return py::make_tuple(r.first, r.second);
}

// ---- the eager chain -------------------------------------------------------------

struct PyMlpChain {
  std::unique_ptr<cpu::MlpChain> chain;
  std::vector<View> keep;  // the layers' W and b
  int dropouts = 0;
};

// One forward pass's saved state, and the arrays it points into (its input and output).
struct PyMlpTape {
  cpu::MlpTape tape;
  py::object x, out;
};

PyMlpChain* make_chain(py::sequence layers) {
  auto* c = new PyMlpChain;
  std::unique_ptr<PyMlpChain> guard(c);
  std::vector<cpu::MlpLayer> parsed = parse_layers(layers, "MlpChain", false, c->keep);
  c->dropouts = cpu::count_dropout(parsed);
  c->chain = std::make_unique<cpu::MlpChain>(std::move(parsed));
  return guard.release();
}

// y = the chain's output for x [batch, in0], a new array; `tape` keeps what backward needs.
py::array_t<float> chain_forward(PyMlpChain& self, py::handle x_obj, const std::vector<std::uint64_t>& seeds,
                                 const std::vector<std::uint64_t>& offsets, PyMlpTape& tape) {
  const char* fn = "MlpChain.forward";
  const auto& layers = self.chain->layers();
  const index_t in0 = layers.front().in, out_n = layers.back().out;
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  if (x.shape.size() != 2 || x.shape[1] != in0 || x.shape[0] < 1)
    value_error(str_cat(fn, ": x must be [batch, ", in0, "] with batch >= 1; got ", describe(x_obj)));
  if (static_cast<int>(seeds.size()) != self.dropouts || static_cast<int>(offsets.size()) != self.dropouts)
    value_error(str_cat(fn, ": needs one (seed, offset) per dropout layer (", self.dropouts, "); got ", seeds.size(),
                        " and ", offsets.size()));
  const index_t batch = x.shape[0];
  py::array_t<float> out = new_f32({batch, out_n});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    self.chain->forward(tape.tape, x.f32(), batch, seeds.data(), offsets.data(), op);
  }
  tape.x = py::reinterpret_borrow<py::object>(x_obj);
  tape.out = out;
  return out;
}

// The backward pass over `tape` from g = ∂loss/∂y: grads[i] = (dW or None, accumulate, db or None,
// accumulate) per layer; returns ∂loss/∂x when need_dx, else None.
py::object chain_backward(PyMlpChain& self, PyMlpTape& tape, py::handle g_obj, py::sequence grads, bool need_dx) {
  const char* fn = "MlpChain.backward";
  const auto& layers = self.chain->layers();
  if (tape.tape.owner != self.chain.get())
    value_error(str_cat(fn, ": the tape was not filled by this chain's forward"));
  const index_t batch = tape.tape.batch, in0 = layers.front().in;
  View g = contiguous(g_obj, fn, "grad", Dtype::F32, false);
  require_shape(g, {batch, layers.back().out}, fn, "grad");
  const size_t n = layers.size();
  if (static_cast<size_t>(py::len(grads)) != n)
    value_error(str_cat(fn, ": needs one (dW, acc, db, acc) per layer (", n, "); got ", py::len(grads)));
  std::vector<cpu::MlpGradDest> dest(n);
  std::vector<View> views;  // every destination, checked against the others and the inputs
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    py::handle item = grads[i];
    if (!py::isinstance<py::tuple>(item) || py::len(item) != 4)
      value_error(str_cat(fn, ": grads[", i, "] must be (dW or None, accumulate, db or None, accumulate)"));
    py::tuple t = py::reinterpret_borrow<py::tuple>(item);
    const cpu::MlpLayer& L = layers[i];
    const std::string wn = str_cat("grads[", i, "].dW"), bn = str_cat("grads[", i, "].db");
    View dW = optional_contiguous(t[0], fn, wn.c_str(), Dtype::F32, true);
    if (!dW.is_none()) {
      require_shape(dW, {L.out, L.in}, fn, wn.c_str());
      dest[i].dW = dW.f32();
      dest[i].acc_w = t[1].cast<bool>();
      views.push_back(std::move(dW));
      names.push_back(wn);
    }
    View db = optional_contiguous(t[2], fn, bn.c_str(), Dtype::F32, true);
    if (!db.is_none()) {
      if (!L.b) value_error(str_cat(fn, ": ", bn, " must be None: layer ", i, " has no bias"));
      require_shape(db, {L.out}, fn, bn.c_str());
      dest[i].db = db.f32();
      dest[i].acc_b = t[3].cast<bool>();
      views.push_back(std::move(db));
      names.push_back(bn);
    }
  }
  py::array_t<float> dx;
  float* dxp = nullptr;
  if (need_dx) {
    dx = new_f32({batch, in0});
    dxp = dx.mutable_data();
  }
  View x = contiguous(tape.x, fn, "the forward's x", Dtype::F32, false);
  View y = contiguous(tape.out, fn, "the forward's output", Dtype::F32, false);
  for (size_t i = 0; i < views.size(); ++i) {
    require_no_overlap(views[i], y, fn, names[i].c_str(), "the forward's output", false);
    for (size_t j = 0; j < i; ++j) require_no_overlap(views[i], views[j], fn, names[i].c_str(), names[j].c_str(), false);
    require_no_overlap(views[i], g, fn, names[i].c_str(), "grad", false);
    require_no_overlap(views[i], x, fn, names[i].c_str(), "the forward's x", false);
    for (const View& p : self.keep) require_no_overlap(views[i], p, fn, names[i].c_str(), "a weight or bias", false);
  }
  {
    py::gil_scoped_release nogil;
    self.chain->backward(tape.tape, g.f32(), dest.data(), dxp);
  }
  if (need_dx) return std::move(dx);
  return py::none();
}

}  // namespace

void bind_mlp(py::module_& m) {
  py::class_<PyMlpTape>(m, "MlpTape", "What one MlpChain.forward saves for its backward pass (reusable).")
      .def(py::init<>())
      .def_property_readonly("batch", [](const PyMlpTape& t) { return t.tape.batch; });
  py::class_<PyMlpChain>(m, "MlpChain",
                         "The Linear/activation/Dropout layers of a Sequential, run eagerly in one native call "
                         "forward (saving into a tape) and one backward.")
      .def(py::init(&make_chain), py::arg("layers"),
           "layers: [(W, b, act, act_param, dropout), ...] float32 arrays (b may be None).")
      .def("forward", &chain_forward, py::arg("x"), py::arg("seeds"), py::arg("offsets"), py::arg("tape"),
           "y for x [batch, in]; dropout layer j uses stream (seeds[j], offsets[j]); `tape` receives what "
           "backward needs.")
      .def("backward", &chain_backward, py::arg("tape"), py::arg("grad"), py::arg("grads"), py::arg("need_dx"),
           "Gradients from grad = dloss/dy over a tape of this chain: grads[i] = (dW or None, accumulate, db "
           "or None, accumulate); returns dloss/dx when need_dx, else None.")
      .def_property_readonly("dropout_layers", [](const PyMlpChain& c) { return c.dropouts; });
  py::class_<PyMlpStepper>(m, "MlpStepper",
                           "Forward, softmax cross-entropy and backward of a Linear/activation/Dropout MLP in one "
                           "call, writing every layer's weight and bias gradients; buffers are reused across steps.")
      .def(py::init(&make_stepper), py::arg("layers"), py::arg("max_batch"),
           "layers: [(W, b, dW, db, act, act_param, dropout), ...] float32 arrays (b/db may be None).")
      .def("train_step", &train_step, py::arg("x"), py::arg("target"), py::arg("seeds"), py::arg("offsets"),
           py::arg("weight") = py::none(), py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0f,
           py::arg("update") = py::none(),
           "One forward/backward on a batch, and with `update` (an SGD or Adam step over the flat "
           "parameter buffer, see parse_update) the optimizer step too; returns (mean loss, number of "
           "rows predicted right).")
      .def("train_steps", &train_steps, py::arg("x"), py::arg("target"), py::arg("sizes"), py::arg("seeds"),
           py::arg("offsets"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
           py::arg("label_smoothing") = 0.0f, py::arg("update") = py::none(),
           "Consecutive train_step calls over the rows of x: step i takes the next sizes[i] rows and "
           "dropout streams (seeds, offsets)[i*d:(i+1)*d]; with `update`, step i is the i-th of "
           "consecutive optimizer steps (Adam's step count advances, SGD's first_step holds for step 0 "
           "only). Returns (losses, correct) as arrays, one entry per step.")
      .def_property_readonly("max_batch", [](const PyMlpStepper& s) { return s.stepper.max_batch(); })
      .def_property_readonly("dropout_layers", [](const PyMlpStepper& s) { return s.stepper.dropout_layers(); });
}

}  // namespace fastmlp::bind
