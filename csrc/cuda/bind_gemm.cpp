// gemm, linear_forward, linear_backward and gemm_plan bindings (device arrays).
// Same names, arguments and semantics as fastmlp._C, plus keyword-only
// `allow_tf32` (use the TF32 tensor-core kernel; off by default) and `stream`.
// linear_forward / linear_backward return new arrays allocated with cupy.empty;
// the split-K workspace, when a plan needs one, is a temporary cupy array too.
#include <algorithm>

#include "cuda/device_args.h"

namespace fastmlp::cuda::bind {
namespace {

struct GemmShape {
  index_t M, N, K;
};

GemmShape gemm_shape(const DevView& a, const DevView& b, bool trans_a, bool trans_b, const char* fn) {
  const index_t M = trans_a ? a.cols() : a.rows();
  const index_t Ka = trans_a ? a.rows() : a.cols();
  const index_t Kb = trans_b ? b.cols() : b.rows();
  const index_t N = trans_b ? b.rows() : b.cols();
  if (Ka != Kb)
    value_error(str_cat(fn, ": inner dimensions differ: op(a) is [", M, ", ", Ka, "] and op(b) is [", Kb, ", ", N,
                        "] (a ", shape_str(a.shape), trans_a ? " transposed" : "", ", b ", shape_str(b.shape),
                        trans_b ? " transposed" : "", ")"));
  return {M, N, Ka};
}

GemmAlgo parse_algo(const std::string& s, const char* fn) {
  for (GemmAlgo a : {GemmAlgo::Auto, GemmAlgo::Simt128x128, GemmAlgo::Simt64x64, GemmAlgo::Simt16x64, GemmAlgo::Tf32})
    if (s == gemm_algo_name(a)) return a;
  value_error(str_cat(fn, ": algo must be 'auto', 'simt128x128', 'simt64x64', 'simt16x64' or 'tf32'; got '", s,
                      "'"));
}

GemmPlan plan_for(const char* fn, index_t M, index_t N, index_t K, bool allow_tf32, GemmAlgo algo, int splits) {
  if (splits < 0 || splits > 64) value_error(str_cat(fn, ": splits must be in [0, 64] (0 = choose); got ", splits));
  try {
    return gemm_plan(M, N, K, allow_tf32, algo, splits);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

// Scratch for the plans of one call: one temporary array large enough for each.
DevView workspace_for(DeviceCall& call, index_t floats) {
  if (floats <= 0) return DevView{};
  return call.empty({floats}, Dtype::F32, "workspace");
}

GemmEpilogue epilogue(const DevView& bias, Act act, float act_param, const DevView& preact) {
  GemmEpilogue ep;
  ep.bias = bias.is_none() ? nullptr : bias.f32();
  ep.act = act;
  ep.act_param = act_param;
  ep.preact = preact.is_none() ? nullptr : preact.f32();
  ep.ldz = preact.is_none() ? 0 : preact.ld;
  return ep;
}

// C = act(alpha·op(A)·op(B) + beta·C + bias)
void gemm_binding(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, bool trans_b, float alpha,
                  float beta, py::handle bias_obj, int act_code, float act_param, py::handle preact_obj,
                  bool allow_tf32, const std::string& algo_s, int splits, py::object stream) {
  const char* fn = "gemm";
  const Act act = act_from_int(act_code, fn);
  const GemmAlgo algo = parse_algo(algo_s, fn);
  DevView a = matrix(a_obj, fn, "a", false);
  DevView b = matrix(b_obj, fn, "b", false);
  DevView c = matrix(c_obj, fn, "c", true);
  const GemmShape s = gemm_shape(a, b, trans_a, trans_b, fn);
  require_shape(c, {s.M, s.N}, fn, "c");
  DevView bias = optional_contiguous(bias_obj, fn, "bias", Dtype::F32, false);
  if (!bias.is_none()) require_shape(bias, {s.N}, fn, "bias");
  DevView preact = optional_matrix(preact_obj, fn, "preact", true);
  if (!preact.is_none()) require_shape(preact, {s.M, s.N}, fn, "preact");
  require_no_overlap(c, a, fn, "c", "a", false);
  require_no_overlap(c, b, fn, "c", "b", false);
  require_no_overlap(c, bias, fn, "c", "bias", false);
  require_no_overlap(preact, a, fn, "preact", "a", false);
  require_no_overlap(preact, b, fn, "preact", "b", false);
  require_no_overlap(preact, c, fn, "preact", "c", false);
  DeviceCall call(fn, stream);
  call.use(a, "a");
  call.use(b, "b");
  call.use(c, "c");
  call.use(bias, "bias");
  call.use(preact, "preact");
  const GemmPlan plan = plan_for(fn, s.M, s.N, s.K, allow_tf32, algo, splits);
  DevView ws = workspace_for(call, gemm_workspace_floats(plan, s.M, s.N));
  const GemmEpilogue ep = epilogue(bias, act, act_param, preact);
  py::gil_scoped_release nogil;
  gemm(c.f32(), c.ld, a.f32(), a.ld, b.f32(), b.ld, s.M, s.N, s.K, trans_a, trans_b, alpha, beta, ep, plan,
       ws.is_none() ? nullptr : ws.f32(), call.stream());
}

// Y[M,N] = act(X[M,K]·W[N,K]ᵀ + b); with keep_preact also returns Z = X·Wᵀ + b.
py::object linear_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj, int act_code, float act_param,
                          bool keep_preact, bool allow_tf32, py::object stream) {
  const char* fn = "linear_forward";
  const Act act = act_from_int(act_code, fn);
  DevView x = matrix(x_obj, fn, "x", false);
  DevView w = matrix(w_obj, fn, "weight", false);
  if (x.cols() != w.cols())
    value_error(str_cat(fn, ": x ", shape_str(x.shape), " and weight ", shape_str(w.shape),
                        " do not match: x has ", x.cols(), " features, weight expects ", w.cols()));
  const index_t M = x.rows(), N = w.rows(), K = x.cols();
  DevView bias = optional_contiguous(bias_obj, fn, "bias", Dtype::F32, false);
  if (!bias.is_none()) require_shape(bias, {N}, fn, "bias");
  DeviceCall call(fn, stream);
  call.use(x, "x");
  call.use(w, "weight");
  call.use(bias, "bias");
  DevView y = call.empty({M, N}, Dtype::F32, "y");
  y.ld = N;
  DevView z;
  if (keep_preact) {
    z = call.empty({M, N}, Dtype::F32, "preact");
    z.ld = N;
  }
  const GemmPlan plan = plan_for(fn, M, N, K, allow_tf32, GemmAlgo::Auto, 0);
  DevView ws = workspace_for(call, gemm_workspace_floats(plan, M, N));
  const GemmEpilogue ep = epilogue(bias, act, act_param, z);
  {
    py::gil_scoped_release nogil;
    gemm(y.f32(), N, x.f32(), x.ld, w.f32(), w.ld, M, N, K, false, true, 1.0f, 0.0f, ep, plan,
         ws.is_none() ? nullptr : ws.f32(), call.stream());
  }
  if (keep_preact) return py::make_tuple(y.obj, z.obj);
  return y.obj;
}

// dW (+)= dZᵀ·X, db (+)= Σ_m dZ, and (when need_dx) returns dX = dZ·W.
py::object linear_backward(py::handle dz_obj, py::handle x_obj, py::handle w_obj, bool need_dx, py::handle dw_obj,
                           py::handle db_obj, bool accumulate_w, bool accumulate_b, bool allow_tf32,
                           py::object stream) {
  const char* fn = "linear_backward";
  DevView dz = matrix(dz_obj, fn, "grad_output", false);
  DevView x = matrix(x_obj, fn, "x", false);
  DevView w = matrix(w_obj, fn, "weight", false);
  const index_t M = dz.rows(), N = dz.cols(), K = x.cols();
  require_shape(x, {M, K}, fn, "x");
  require_shape(w, {N, K}, fn, "weight");
  DevView dw = optional_matrix(dw_obj, fn, "grad_weight", true);
  if (!dw.is_none()) require_shape(dw, {N, K}, fn, "grad_weight");
  DevView db = optional_contiguous(db_obj, fn, "grad_bias", Dtype::F32, true);
  if (!db.is_none()) require_shape(db, {N}, fn, "grad_bias");
  for (const DevView* in : {&dz, &x, &w}) {
    require_no_overlap(dw, *in, fn, "grad_weight", "an input", false);
    require_no_overlap(db, *in, fn, "grad_bias", "an input", false);
  }
  require_no_overlap(dw, db, fn, "grad_weight", "grad_bias", false);
  DeviceCall call(fn, stream);
  call.use(dz, "grad_output");
  call.use(x, "x");
  call.use(w, "weight");
  call.use(dw, "grad_weight");
  call.use(db, "grad_bias");
  DevView dx;
  if (need_dx) dx = call.empty({M, K}, Dtype::F32, "grad_input");
  GemmPlan plan_w, plan_x;
  index_t ws_floats = 0;
  if (!dw.is_none()) {
    plan_w = plan_for(fn, N, K, M, allow_tf32, GemmAlgo::Auto, 0);
    ws_floats = std::max(ws_floats, gemm_workspace_floats(plan_w, N, K));
  }
  if (need_dx) {
    plan_x = plan_for(fn, M, K, N, allow_tf32, GemmAlgo::Auto, 0);
    ws_floats = std::max(ws_floats, gemm_workspace_floats(plan_x, M, K));
  }
  DevView ws = workspace_for(call, ws_floats);  // the two GEMMs run one after the other on the stream
  float* wsp = ws.is_none() ? nullptr : ws.f32();
  {
    py::gil_scoped_release nogil;
    const GemmEpilogue none;
    if (!dw.is_none())
      gemm(dw.f32(), dw.ld, dz.f32(), dz.ld, x.f32(), x.ld, N, K, M, true, false, 1.0f, accumulate_w ? 1.0f : 0.0f,
           none, plan_w, wsp, call.stream());
    if (!db.is_none()) colsum(db.f32(), dz.f32(), M, N, dz.ld, accumulate_b, call.stream());
    if (need_dx)
      gemm(dx.f32(), K, dz.f32(), dz.ld, w.f32(), w.ld, M, K, N, false, false, 1.0f, 0.0f, none, plan_x, wsp,
           call.stream());
  }
  if (need_dx) return dx.obj;
  return py::none();
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm_binding, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("bias") = py::none(),
        py::arg("act") = 0, py::arg("act_param") = 0.0f, py::arg("preact") = py::none(), py::kw_only(),
        py::arg("allow_tf32") = false, py::arg("algo") = "auto", py::arg("splits") = 0, py::arg("stream") = py::none(),
        "In place on the device: c = act(alpha * op(a) @ op(b) + beta * c + bias), op = transpose when "
        "trans_*; float32 matrices with contiguous rows; `preact` receives the value before act. "
        "allow_tf32 lets problems of more than 32 rows run on TF32 tensor cores; `algo` and `splits` force a "
        "kernel variant and a split of K (for tests and benchmarks).");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("act") = 0, py::arg("act_param") = 0.0f, py::arg("keep_preact") = false, py::kw_only(),
        py::arg("allow_tf32") = false, py::arg("stream") = py::none(),
        "y = act(x @ weight.T + bias) for device arrays x [M, K], weight [N, K]; returns a new cupy array y, "
        "or (y, preact).");
  m.def("linear_backward", &linear_backward, py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("need_dx") = true, py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("accumulate_weight") = false, py::arg("accumulate_bias") = false, py::kw_only(),
        py::arg("allow_tf32") = false, py::arg("stream") = py::none(),
        "grad_weight (+)= grad_output.T @ x, grad_bias (+)= grad_output.sum(0); returns grad_output @ weight "
        "(a new cupy array) when need_dx, else None.");
  m.def("gemm_plan",
        [](index_t M, index_t N, index_t K, bool allow_tf32, const std::string& algo, int splits) {
          if (M < 0 || N < 0 || K < 0)
            value_error(str_cat("gemm_plan: sizes must be >= 0; got ", M, " x ", N, " x ", K));
          DeviceCall call("gemm_plan", py::int_(0));  // no launch: any stream will do
          const GemmPlan p = plan_for("gemm_plan", M, N, K, allow_tf32, parse_algo(algo, "gemm_plan"), splits);
          return py::make_tuple(gemm_algo_name(p.algo), p.splits, p.k_chunk);
        },
        py::arg("M"), py::arg("N"), py::arg("K"), py::arg("allow_tf32") = false, py::arg("algo") = "auto",
        py::arg("splits") = 0,
        "(variant, splits, k_chunk) that gemm would use for an M x N x K product on the current device.");
}

}  // namespace fastmlp::cuda::bind
