// The CPU kernel set. Every kernel is a plain function over raw pointers, sizes
// and strides; it trusts its arguments (the bindings check them first) and never
// throws, prints or exits. Outputs come first, then const inputs, then sizes;
// gradients start with `d`. Matrices are row-major with a leading dimension
// (row stride, in elements) named ld<matrix>.
//
// The sources under csrc/cpu/isa/ and csrc/cpu/gemm/ are compiled once per
// instruction set (generic x86-64, AVX2+FMA, AVX-512, AVX-512 with AVX512-BF16), each copy inside
// namespace fastmlp::cpu::<isa>, and each copy fills one KernelTable.
#pragma once

#include <cstdint>

#include "common/activation.h"

namespace fastmlp::cpu {

using index_t = std::int64_t;

// ---- GEMM ------------------------------------------------------------------
// C[M,N] = epilogue(alpha·op(A)·op(B) + beta·C)        op(X) = X or Xᵀ
// A is [M,K] (or [K,M] when trans_a), B is [K,N] (or [N,K] when trans_b).
// beta == 0 means C is write-only (it may hold NaN). The epilogue runs on each tile
// of C before it is stored, and is one of three kinds, for each final element z:
//   Store    C = z.
//   BiasAct  z += bias[n] (bias may be null); preact = z (when non-null); C = act(z).
//   SgdStep  C = z, and a plain SGD step on the matching element of `weights` ([M, ldw],
//            laid out as C): weights -= lr·z, the product rounded before the subtraction,
//            as sgd_step computes it. A weight gradient's GEMM thereby updates the
//            weights while its tile is in registers' reach. With keep_c false, C is only
//            wanted for that step: the GEMM may leave it unwritten (it keeps each tile in
//            a scratch tile instead, where K fits in one cache block), which spares the
//            memory traffic of storing a gradient no one reads.
struct GemmEpilogue {
  enum class Kind : std::uint8_t { Store, BiasAct, SgdStep };
  struct BiasAct {
    const float* bias = nullptr;  // [N] or null
    Act act = Act::Identity;
    float act_param = 0.0f;       // negative slope of LeakyReLU
    float* preact = nullptr;      // [M, ldz] or null
    index_t ldz = 0;
  };
  struct SgdStep {
    float* weights = nullptr;  // [M, ldw]
    index_t ldw = 0;
    float lr = 0.0f;
    bool keep_c = true;
  };
  Kind kind = Kind::Store;
  BiasAct bias_act{};
  SgdStep sgd{};

  static GemmEpilogue store() { return GemmEpilogue{}; }
  static GemmEpilogue with_bias_act(const float* bias, Act act, float act_param, float* preact = nullptr,
                                    index_t ldz = 0) {
    GemmEpilogue e;
    e.kind = Kind::BiasAct;
    e.bias_act = BiasAct{bias, act, act_param, preact, ldz};
    return e;
  }
  static GemmEpilogue with_sgd_step(float* weights, index_t ldw, float lr, bool keep_c) {
    GemmEpilogue e;
    e.kind = Kind::SgdStep;
    e.sgd = SgdStep{weights, ldw, lr, keep_c};
    return e;
  }

  // What each kind reads, as the other kinds see it (null, Identity): the kernels ask these.
  const float* bias() const { return kind == Kind::BiasAct ? bias_act.bias : nullptr; }
  float* preact() const { return kind == Kind::BiasAct ? bias_act.preact : nullptr; }
  index_t ldz() const { return bias_act.ldz; }
  Act act() const { return kind == Kind::BiasAct ? bias_act.act : Act::Identity; }
  float act_param() const { return bias_act.act_param; }
  float* weights() const { return kind == Kind::SgdStep ? sgd.weights : nullptr; }
  // True unless an SGD step may leave C unwritten.
  bool keep_c() const { return kind != Kind::SgdStep || sgd.keep_c; }
  // Whether only C = z is asked for.
  bool plain() const { return kind == Kind::Store || (!bias_act.bias && !bias_act.preact &&
                                                      bias_act.act == Act::Identity && kind == Kind::BiasAct); }

  // The same epilogue for the block of C whose first element is (m0, n0).
  GemmEpilogue at(index_t m0, index_t n0) const {
    GemmEpilogue e = *this;
    if (kind == Kind::BiasAct) {
      if (e.bias_act.bias) e.bias_act.bias += n0;
      if (e.bias_act.preact) e.bias_act.preact += m0 * e.bias_act.ldz + n0;
    } else if (kind == Kind::SgdStep) {
      e.sgd.weights += m0 * e.sgd.ldw + n0;
    }
    return e;
  }
};
using GemmFn = void (*)(float* C, index_t ldc, const float* A, index_t lda, const float* B,
                        index_t ldb, index_t M, index_t N, index_t K, bool trans_a, bool trans_b,
                        float alpha, float beta, const GemmEpilogue& ep);

// bfloat16 GEMM: the same product and epilogue as GemmFn, with op(A) and op(B) rounded to
// bfloat16 (common/bf16.h) as they are packed, and float32 accumulation and output. The
// products of two bfloat16 values are exact in float32, so every path computes the same
// products and differs only in the float32 order of their sum.
// (The same signature as GemmFn: the operands are float32 and are converted in the packing.)

// ---- bfloat16 conversions ------------------------------------------------------
// dst[i] = bfloat16(src[i]), rounded to nearest even (common/bf16.h); dst[i] = float32(src[i]).
using F32ToBf16Fn = void (*)(std::uint16_t* dst, const float* src, index_t n);
using Bf16ToF32Fn = void (*)(float* dst, const std::uint16_t* src, index_t n);

// ---- arithmetic peak (benchmarks) -----------------------------------------------
// A register-only loop of `iters` rounds on every OpenMP thread; returns the flops it did
// (the caller times it). peak_fma: float32 FMAs; peak_bf16: the bfloat16 GEMM's instruction.
using PeakFn = double (*)(index_t iters);

// ---- activations -------------------------------------------------------------
// y[i] = act(x[i]); dx[i] = dy[i]·act'(·) (+ dx[i] when accumulate), where `saved`
// is x or y as act_backward_needs_input(act) says. y may alias x, dx may alias dy.
using ActForwardFn = void (*)(float* y, const float* x, index_t n, Act act, float param);
using ActBackwardFn = void (*)(float* dx, const float* dy, const float* saved, index_t n, Act act,
                               float param, bool accumulate);

// ---- softmax and losses --------------------------------------------------------
// Row-wise over [rows, cols]: y = softmax(x) or log_softmax(x).
using SoftmaxForwardFn = void (*)(float* y, const float* x, index_t rows, index_t cols, bool log);
// softmax:     dx = y ⊙ (dy - Σ_j dy_j y_j)     log_softmax: dx = dy - e^y · Σ_j dy_j
using SoftmaxBackwardFn = void (*)(float* dx, const float* dy, const float* y, index_t rows,
                                   index_t cols, bool log);

struct LossSums {
  double loss_sum;    // Σ_i loss_i (weighted)
  double weight_sum;  // Σ_i w[label_i] over rows whose label is not ignore_index
};
// Cross entropy of softmax(logits) against class indices, as torch.nn.functional.cross_entropy:
//   loss_i = (1-ε)·w[y_i]·(-log p_iy) + (ε/C)·Σ_c w[c]·(-log p_ic), 0 where y_i == ignore_index.
// class_weight may be null (all ones). row_loss (may be null) receives loss_i; dlogits
// (may be null) receives grad_scale·∂loss_i/∂logits, divided by weight_sum when
// divide_by_weight_sum. Labels must be in [0, cols) or equal ignore_index.
using SoftmaxXentFn = LossSums (*)(float* dlogits, float* row_loss, const float* logits,
                                   const std::int64_t* labels, const float* class_weight,
                                   index_t rows, index_t cols, std::int64_t ignore_index,
                                   float label_smoothing, float grad_scale,
                                   bool divide_by_weight_sum);
// Negative log-likelihood on log-probabilities: loss_i = -w[y_i]·logp[i, y_i].
using NllFn = LossSums (*)(float* dlogp, float* row_loss, const float* logp,
                           const std::int64_t* labels, const float* class_weight, index_t rows,
                           index_t cols, std::int64_t ignore_index, float grad_scale,
                           bool divide_by_weight_sum);

// Element-wise losses over n elements: returns Σ_i loss_i; elem_loss and dinput may be null;
// weight (may be null) multiplies each element; dinput = grad_scale·w·∂loss_i/∂input_i.
//   mse: (x-t)²   l1: |x-t|   bce: -(t·log x + (1-t)·log(1-x)), logs clamped at -100
//   bce_logits: max(x,0) - x·t + log(1 + e^-|x|)
enum class PointwiseLoss : int { MSE = 0, L1 = 1, BCE = 2, BCEWithLogits = 3 };
using PointwiseLossFn = double (*)(float* dinput, float* elem_loss, const float* input,
                                   const float* target, const float* weight, index_t n,
                                   PointwiseLoss kind, float grad_scale);

// ---- reductions ------------------------------------------------------------
// out[c] (+)= Σ_r x[r, c]   (bias gradient)        out[r] (+)= Σ_c x[r, c]
using ColSumFn = void (*)(float* out, const float* x, index_t rows, index_t cols, index_t ldx,
                          bool accumulate);
using RowSumFn = void (*)(float* out, const float* x, index_t rows, index_t cols, index_t ldx,
                          bool accumulate);

// ---- dropout -----------------------------------------------------------------
// Element i is kept when philox_bits(seed, offset, i) >= threshold(p); kept values are
// scaled by 1/(1-p). The mask (1 = kept) is optional; backward uses it.
using DropoutForwardFn = void (*)(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                                  std::uint64_t seed, std::uint64_t offset);
using DropoutBackwardFn = void (*)(float* dx, const float* dy, const std::uint8_t* mask, index_t n,
                                   float p, bool accumulate);

// ---- optimizers (multi-tensor: one call updates `count` tensors) ---------------
// Update formulas are PyTorch's (torch.optim.SGD / Adam / AdamW documentation).
struct SgdOptions {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool first_step;  // momentum buffers are initialised to the first d_p
};
using SgdStepFn = void (*)(float* const* params, float* const* momentum_bufs,
                           const float* const* grads, const index_t* sizes, index_t count,
                           const SgdOptions& opt);
struct AdamOptions {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay;  // AdamW
  bool amsgrad, maximize;
  std::int64_t step;            // step count after this update (1 on the first)
};
using AdamStepFn = void (*)(float* const* params, float* const* exp_avgs, float* const* exp_avg_sqs,
                            float* const* max_exp_avg_sqs, const float* const* grads,
                            const index_t* sizes, index_t count, const AdamOptions& opt);

struct KernelTable {
  const char* isa = nullptr;
  GemmFn gemm = nullptr;
  GemmFn gemm_bf16 = nullptr;
  // The pair-packed bfloat16 GEMM (gemm/bf16_dp.cpp): vdpbf16ps in the avx512bf16 set, an
  // emulation of the instruction in the others. For tests: it runs that path on any CPU.
  GemmFn gemm_bf16_pairs = nullptr;
  // The AMX bfloat16 GEMM (gemm/bf16_amx.cpp): tiles in the amx set, emulated in the others (tests).
  GemmFn gemm_bf16_amx = nullptr;
  // How gemm_bf16 multiplies: "amx (...)", "avx512bf16 (vdpbf16ps)", or "float32 FMA on bfloat16-rounded
  // operands" where the CPU has no bfloat16 instructions (the same products).
  const char* bf16_path = nullptr;
  F32ToBf16Fn f32_to_bf16 = nullptr;
  Bf16ToF32Fn bf16_to_f32 = nullptr;
  PeakFn peak_fma = nullptr;   // null in the reference set
  PeakFn peak_bf16 = nullptr;
  ActForwardFn act_forward = nullptr;
  ActBackwardFn act_backward = nullptr;
  SoftmaxForwardFn softmax_forward = nullptr;
  SoftmaxBackwardFn softmax_backward = nullptr;
  SoftmaxXentFn softmax_xent = nullptr;
  NllFn nll = nullptr;
  PointwiseLossFn pointwise_loss = nullptr;
  ColSumFn colsum = nullptr;
  RowSumFn rowsum = nullptr;
  DropoutForwardFn dropout_forward = nullptr;
  DropoutBackwardFn dropout_backward = nullptr;
  SgdStepFn sgd_step = nullptr;
  AdamStepFn adam_step = nullptr;
};

// The table in use (chosen at import; see dispatch.cpp).
const KernelTable& kernels();
// Names of the instruction sets this build has and this CPU runs, best last.
const char* const* available_isas(int* count);
// Why the amx kernel set is or is not available: "available", "not in this build", "this CPU
// has no AMX-BF16", or that the OS refused the tile state.
const char* amx_status();
// Switch to another available set ("generic", "avx2", "avx512", "avx512bf16", "amx"); throws if unavailable.
void set_isa(const char* name);

}  // namespace fastmlp::cpu
