// gemm, linear_forward and linear_backward bindings.
#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {
namespace {

struct GemmShape {
  index_t M, N, K;
};

GemmShape gemm_shape(const View& a, const View& b, bool trans_a, bool trans_b, const char* fn) {
  const index_t M = trans_a ? a.cols() : a.rows();
  const index_t Ka = trans_a ? a.rows() : a.cols();
  const index_t Kb = trans_b ? b.cols() : b.rows();
  const index_t N = trans_b ? b.rows() : b.cols();
  if (Ka != Kb)
    value_error(str_cat(fn, ": inner dimensions differ: op(a) is [", M, ", ", Ka, "] and op(b) is [", Kb,
                        ", ", N, "] (a ", shape_str(a.shape), trans_a ? " transposed" : "", ", b ",
                        shape_str(b.shape), trans_b ? " transposed" : "", ")"));
  return {M, N, Ka};
}

cpu::GemmEpilogue epilogue(const View& bias, Act act, float act_param, const View& preact) {
  return cpu::GemmEpilogue::with_bias_act(bias.is_none() ? nullptr : bias.f32(), act, act_param,
                                         preact.is_none() ? nullptr : preact.f32(), preact.is_none() ? 0 : preact.ld);
}

// The float32 GEMM, or (bf16) the bfloat16 one: operands rounded to bfloat16 in its packing.
cpu::GemmFn gemm_fn(bool bf16) { return bf16 ? cpu::kernels().gemm_bf16 : cpu::kernels().gemm; }

// Which GEMM of the kernel table a binding calls.
using GemmEntry = cpu::GemmFn cpu::KernelTable::*;

// C = act(alpha·op(A)·op(B) + beta·C + bias)
void gemm_impl(const char* fn, GemmEntry entry, py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a,
               bool trans_b, float alpha, float beta, py::handle bias_obj, int act_code, float act_param,
               py::handle preact_obj) {
  const Act act = act_from_int(act_code, fn);
  View a = matrix(a_obj, fn, "a", false);
  View b = matrix(b_obj, fn, "b", false);
  View c = matrix(c_obj, fn, "c", true);
  const GemmShape s = gemm_shape(a, b, trans_a, trans_b, fn);
  require_shape(c, {s.M, s.N}, fn, "c");
  View bias = optional_contiguous(bias_obj, fn, "bias", Dtype::F32, false);
  if (!bias.is_none()) require_shape(bias, {s.N}, fn, "bias");
  View preact = optional_matrix(preact_obj, fn, "preact", true);
  if (!preact.is_none()) require_shape(preact, {s.M, s.N}, fn, "preact");
  require_no_overlap(c, a, fn, "c", "a", false);
  require_no_overlap(c, b, fn, "c", "b", false);
  require_no_overlap(c, bias, fn, "c", "bias", false);
  require_no_overlap(preact, a, fn, "preact", "a", false);
  require_no_overlap(preact, b, fn, "preact", "b", false);
  require_no_overlap(preact, c, fn, "preact", "c", false);
  require_no_overlap(preact, bias, fn, "preact", "bias", false);
  const cpu::GemmEpilogue ep = epilogue(bias, act, act_param, preact);
  py::gil_scoped_release nogil;
  (cpu::kernels().*entry)(c.f32(), c.ld, a.f32(), a.ld, b.f32(), b.ld, s.M, s.N, s.K, trans_a, trans_b, alpha,
                      beta, ep);
}

void gemm(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, bool trans_b, float alpha,
          float beta, py::handle bias_obj, int act_code, float act_param, py::handle preact_obj) {
  gemm_impl("gemm", &cpu::KernelTable::gemm, a_obj, b_obj, c_obj, trans_a, trans_b, alpha, beta, bias_obj,
            act_code, act_param, preact_obj);
}

void gemm_bf16(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, bool trans_b, float alpha,
               float beta, py::handle bias_obj, int act_code, float act_param, py::handle preact_obj) {
  gemm_impl("gemm_bf16", &cpu::KernelTable::gemm_bf16, a_obj, b_obj, c_obj, trans_a, trans_b, alpha, beta,
            bias_obj, act_code, act_param, preact_obj);
}

void gemm_bf16_pairs(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, bool trans_b, float alpha,
                     float beta, py::handle bias_obj, int act_code, float act_param, py::handle preact_obj) {
  gemm_impl("_gemm_bf16_pairs", &cpu::KernelTable::gemm_bf16_pairs, a_obj, b_obj, c_obj, trans_a, trans_b, alpha,
            beta, bias_obj, act_code, act_param, preact_obj);
}

void gemm_bf16_amx(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, bool trans_b, float alpha,
                   float beta, py::handle bias_obj, int act_code, float act_param, py::handle preact_obj) {
  gemm_impl("_gemm_bf16_amx", &cpu::KernelTable::gemm_bf16_amx, a_obj, b_obj, c_obj, trans_a, trans_b, alpha,
            beta, bias_obj, act_code, act_param, preact_obj);
}

// Y[M,N] = act(X[M,K]·W[N,K]ᵀ + b); with keep_preact also returns Z = X·Wᵀ + b.
// bf16: the product on X and W rounded to bfloat16 (float32 accumulation and output).
py::object linear_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj, int act_code,
                          float act_param, bool keep_preact, bool bf16) {
  const char* fn = "linear_forward";
  const Act act = act_from_int(act_code, fn);
  View x = matrix(x_obj, fn, "x", false);
  View w = matrix(w_obj, fn, "weight", false);
  if (x.cols() != w.cols())
    value_error(str_cat(fn, ": x ", shape_str(x.shape), " and weight ", shape_str(w.shape),
                        " do not match: x has ", x.cols(), " features, weight expects ", w.cols()));
  const index_t M = x.rows(), N = w.rows(), K = x.cols();
  View bias = optional_contiguous(bias_obj, fn, "bias", Dtype::F32, false);
  if (!bias.is_none()) require_shape(bias, {N}, fn, "bias");
  py::array_t<float> y = new_f32({M, N}, fn, "y");
  py::array_t<float> z;
  View zv;
  if (keep_preact) {
    z = new_f32({M, N}, fn, "preact");
    zv.data = z.mutable_data();
    zv.shape = {M, N};
    zv.ld = N;
  }
  const cpu::GemmEpilogue ep = epilogue(bias, act, act_param, zv);
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    gemm_fn(bf16)(yp, N, x.f32(), x.ld, w.f32(), w.ld, M, N, K, false, true, 1.0f, 0.0f, ep);
  }
  if (keep_preact) return py::make_tuple(y, z);
  return std::move(y);
}

// dW (+)= dZᵀ·X, db (+)= Σ_m dZ, and (when need_dx) returns dX = dZ·W.
// bf16: both products on operands rounded to bfloat16 (db stays a float32 sum of dZ).
py::object linear_backward(py::handle dz_obj, py::handle x_obj, py::handle w_obj, bool need_dx,
                           py::handle dw_obj, py::handle db_obj, bool accumulate_w, bool accumulate_b,
                           bool bf16) {
  const char* fn = "linear_backward";
  View dz = matrix(dz_obj, fn, "grad_output", false);
  View x = matrix(x_obj, fn, "x", false);
  View w = matrix(w_obj, fn, "weight", false);
  const index_t M = dz.rows(), N = dz.cols(), K = x.cols();
  require_shape(x, {M, K}, fn, "x");
  require_shape(w, {N, K}, fn, "weight");
  View dw = optional_matrix(dw_obj, fn, "grad_weight", true);
  if (!dw.is_none()) require_shape(dw, {N, K}, fn, "grad_weight");
  View db = optional_contiguous(db_obj, fn, "grad_bias", Dtype::F32, true);
  if (!db.is_none()) require_shape(db, {N}, fn, "grad_bias");
  for (const View* in : {&dz, &x, &w}) {
    require_no_overlap(dw, *in, fn, "grad_weight", "an input", false);
    require_no_overlap(db, *in, fn, "grad_bias", "an input", false);
  }
  require_no_overlap(dw, db, fn, "grad_weight", "grad_bias", false);
  py::array_t<float> dx;
  float* dxp = nullptr;
  if (need_dx) {
    dx = new_f32({M, K}, fn, "grad_input");
    dxp = dx.mutable_data();
  }
  {
    py::gil_scoped_release nogil;
    const cpu::KernelTable& k = cpu::kernels();
    const cpu::GemmEpilogue none;
    const cpu::GemmFn g = bf16 ? k.gemm_bf16 : k.gemm;
    if (!dw.is_none())
      g(dw.f32(), dw.ld, dz.f32(), dz.ld, x.f32(), x.ld, N, K, M, true, false, 1.0f,
             accumulate_w ? 1.0f : 0.0f, none);
    if (!db.is_none()) k.colsum(db.f32(), dz.f32(), M, N, dz.ld, accumulate_b);
    if (need_dx) g(dxp, K, dz.f32(), dz.ld, w.f32(), w.ld, M, K, N, false, false, 1.0f, 0.0f, none);
  }
  if (need_dx) return std::move(dx);
  return py::none();
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("bias") = py::none(), py::arg("act") = 0, py::arg("act_param") = 0.0f,
        py::arg("preact") = py::none(),
        "In place: c = act(alpha * op(a) @ op(b) + beta * c + bias), op = transpose when trans_*. "
        "float32 matrices with contiguous rows; `preact` receives the value before act.");
  m.def("gemm_bf16", &gemm_bf16, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("bias") = py::none(), py::arg("act") = 0, py::arg("act_param") = 0.0f,
        py::arg("preact") = py::none(),
        "gemm with op(a) and op(b) rounded to bfloat16 (nearest even) as they are packed, and float32 "
        "accumulation and output (see bf16_path() for the instructions used).");
  m.def("_gemm_bf16_pairs", &gemm_bf16_pairs, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("bias") = py::none(), py::arg("act") = 0, py::arg("act_param") = 0.0f,
        py::arg("preact") = py::none(),
        "gemm_bf16 on the pair-packed path of the AVX512-BF16 kernel: vdpbf16ps in the avx512bf16 set, "
        "an emulation of it elsewhere (for tests).");
  m.def("_gemm_bf16_amx", &gemm_bf16_amx, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("bias") = py::none(), py::arg("act") = 0, py::arg("act_param") = 0.0f,
        py::arg("preact") = py::none(),
        "gemm_bf16 on the AMX path: tiles in the amx set, the tile instructions emulated elsewhere (for tests).");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("act") = 0, py::arg("act_param") = 0.0f, py::arg("keep_preact") = false, py::arg("bf16") = false,
        "y = act(x @ weight.T + bias) for x [M, K], weight [N, K]; returns y, or (y, preact).");
  m.def("linear_backward", &linear_backward, py::arg("grad_output"), py::arg("x"), py::arg("weight"),
        py::arg("need_dx") = true, py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("accumulate_weight") = false, py::arg("accumulate_bias") = false, py::arg("bf16") = false,
        "grad_weight (+)= grad_output.T @ x, grad_bias (+)= grad_output.sum(0); returns "
        "grad_output @ weight when need_dx, else None.");
}

}  // namespace fastmlp::bind
