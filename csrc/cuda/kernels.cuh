// The CUDA kernel set: the same functions and semantics as the CPU's
// (cpu/kernels.h, formulas in cpu/reference.cpp), over device pointers, enqueued
// on `stream`. Outputs come first, then const inputs, then sizes, then the stream;
// gradients start with `d`. Matrices are row-major with a leading dimension
// ld<matrix> in elements. Launchers trust their arguments (the bindings check them
// first), return without launching when there is no work, check every launch and
// throw std::runtime_error on a CUDA error. Nothing here synchronises the host,
// except check_labels / check_unit_interval users, which read a result back.
//
// Where the CPU returns a sum computed in double, the CUDA kernels write per-row
// (or per-block) double partials that sum_to_scalar() adds in a fixed order, so
// every result is bitwise reproducible on a given device; no float atomics.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/activation.h"

namespace fastmlp::cuda {

using index_t = std::int64_t;

// ---- GEMM ------------------------------------------------------------------
// C[M,N] = act(alpha·op(A)·op(B) + beta·C + bias)        op(X) = X or Xᵀ
// A is [M,K] (or [K,M] when trans_a), B is [K,N] (or [N,K] when trans_b).
// beta == 0 means C is write-only. Epilogue: bias (per column, may be null), then
// `act`; `preact` (may be null) receives the value before the activation.
struct GemmEpilogue {
  const float* bias = nullptr;  // [N] or null
  Act act = Act::Identity;
  float act_param = 0.0f;       // negative slope of LeakyReLU
  float* preact = nullptr;      // [M, ldz] or null
  index_t ldz = 0;
};

// Kernel variants. Simt* are FP32 CUDA-core kernels named by block tile
// (rows x columns); Tf32 runs on tensor cores (sm_80+) with TF32 inputs
// (10-bit mantissa) and FP32 accumulation.
enum class GemmAlgo : int { Auto = 0, Simt128x128 = 1, Simt64x64 = 2, Simt16x64 = 3, Tf32 = 4 };
const char* gemm_algo_name(GemmAlgo algo);

// How one GEMM runs: the variant and the split of K. With splits > 1 each split
// writes its partial product to the workspace and a second kernel adds the splits
// in a fixed order and applies the epilogue (deterministic split-K).
struct GemmPlan {
  GemmAlgo algo = GemmAlgo::Simt128x128;
  int splits = 1;
  index_t k_chunk = 0;  // K per split, a multiple of the variant's K tile
};

// Picks the plan for the current device (its SM count and compute capability).
// `algo` / `splits` force a variant / split count (0 = choose); Tf32 is only chosen
// when allow_tf32 and the device has tensor cores for it.
GemmPlan gemm_plan(index_t M, index_t N, index_t K, bool allow_tf32, GemmAlgo algo = GemmAlgo::Auto,
                   int splits = 0);
// Workspace the plan needs, in floats (0 when splits == 1).
index_t gemm_workspace_floats(const GemmPlan& plan, index_t M, index_t N);

// `workspace` holds gemm_workspace_floats(plan, M, N) floats (16-byte aligned).
void gemm(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb, index_t M,
          index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta, const GemmEpilogue& ep,
          const GemmPlan& plan, float* workspace, cudaStream_t stream);

// ---- activations -------------------------------------------------------------
// y[i] = act(x[i]); y may alias x.
void act_forward(float* y, const float* x, index_t n, Act act, float param, cudaStream_t stream);
// dx[i] = dy[i]·act'(·) (+ dx[i] when accumulate); `saved` is x or y as
// act_backward_needs_input(act) says (ignored for Identity). dx may alias dy.
void act_backward(float* dx, const float* dy, const float* saved, index_t n, Act act, float param,
                  bool accumulate, cudaStream_t stream);

// ---- softmax -------------------------------------------------------------------
// Row-wise over [rows, cols]: y = softmax(x) or log_softmax(x).
void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log, cudaStream_t stream);
// softmax:     dx = y ⊙ (dy - Σ_j dy_j y_j)     log_softmax: dx = dy - e^y · Σ_j dy_j
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, bool log,
                      cudaStream_t stream);

// ---- class-index losses ------------------------------------------------------
// Label check run before a class-index loss: the first row whose label is neither
// ignore_index nor in [0, classes) (UINT64_MAX when none), Σ_i w[y_i] over the
// other rows, and Σ_c w[c]. Written to `result` (device memory) by one block.
struct LabelCheck {
  std::uint64_t first_bad;
  double weight_sum;
  double class_weight_sum;
};
void check_labels(LabelCheck* result, const std::int64_t* labels, const float* class_weight, index_t rows,
                  index_t classes, std::int64_t ignore_index, cudaStream_t stream);

// Cross entropy of softmax(logits) against class indices, as torch.nn.functional.cross_entropy:
//   loss_i = (1-ε)·w[y_i]·(-log p_iy) + (ε/C)·Σ_c w[c]·(-log p_ic), 0 where y_i == ignore_index.
// row_loss (float) and row_loss64 (double, for sum_to_scalar) may each be null;
// dlogits (may be null) = grad_scale·∂loss_i/∂logits (the caller folds 1/weight_sum
// into grad_scale for a mean). class_weight_sum = Σ_c w[c] (C when unweighted).
// Labels were checked; a label out of range is treated as ignored (never read).
void softmax_xent(float* dlogits, float* row_loss, double* row_loss64, const float* logits,
                  const std::int64_t* labels, const float* class_weight, index_t rows, index_t cols,
                  std::int64_t ignore_index, float label_smoothing, float grad_scale, double class_weight_sum,
                  cudaStream_t stream);
// Negative log-likelihood on log-probabilities: loss_i = -w[y_i]·logp[i, y_i];
// dlogp = grad_scale·∂loss_i/∂logp (zero except at the label).
void nll(float* dlogp, float* row_loss, double* row_loss64, const float* logp, const std::int64_t* labels,
         const float* class_weight, index_t rows, index_t cols, std::int64_t ignore_index, float grad_scale,
         cudaStream_t stream);

// ---- element-wise losses -------------------------------------------------------
//   mse: (x-t)²   l1: |x-t|   bce: -(t·log x + (1-t)·log(1-x)), logs clamped at -100
//   bce_logits: max(x,0) - x·t + log(1 + e^-|x|)
// elem_loss and dinput may be null; weight (may be null) multiplies each element;
// dinput = grad_scale·w·∂loss_i/∂input_i. block_sums receives
// pointwise_loss_partials(n) doubles whose sum is Σ_i w·loss_i.
enum class PointwiseLoss : int { MSE = 0, L1 = 1, BCE = 2, BCEWithLogits = 3 };
index_t pointwise_loss_partials(index_t n);
void pointwise_loss(float* dinput, float* elem_loss, double* block_sums, const float* input, const float* target,
                    const float* weight, index_t n, PointwiseLoss kind, float grad_scale, cudaStream_t stream);
// first_bad = index of the first x[i] outside [0, 1] (NaN included), UINT64_MAX when none.
void check_unit_interval(std::uint64_t* first_bad, const float* x, index_t n, cudaStream_t stream);

// out[0] = (float)(Σ_i x[i] / divisor), summed in double in a fixed order (one block).
void sum_to_scalar(float* out, const double* x, index_t n, double divisor, cudaStream_t stream);

// ---- reductions ------------------------------------------------------------
// out[c] (+)= Σ_r x[r, c]   (bias gradient)        out[r] (+)= Σ_c x[r, c]
// Double accumulation in a fixed order; out must not overlap x.
void colsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate,
            cudaStream_t stream);
void rowsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate,
            cudaStream_t stream);

// ---- dropout -----------------------------------------------------------------
// Element i is kept when philox_bits(seed, offset, i) >= dropout_threshold(p); kept
// values are scaled by 1/(1-p). mask (1 = kept) may be null. Bitwise the CPU's.
void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, cudaStream_t stream);
// dx (+)= dy·mask/(1-p)
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p, bool accumulate,
                      cudaStream_t stream);
// out[i] = philox_bits(seed, offset, i)
void philox_fill(std::uint32_t* out, index_t n, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream);

// ---- optimizers (multi-tensor) -----------------------------------------------
// Formulas are PyTorch's (torch.optim.SGD / Adam / AdamW), as in cpu/reference.cpp.
// The host-side table of tensors is passed to the kernel by value (kernel
// parameter space), up to kMaxTensorsPerLaunch tensors per launch, so no host-to-
// device copy (which would block on pageable memory) is needed.
constexpr int kMaxTensorsPerLaunch = 48;

struct SgdOptions {
  float lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  bool first_step;  // momentum buffers are initialised to the first d_p
};
struct SgdTensor {
  float* param;
  float* momentum_buf;  // null when momentum == 0
  const float* grad;
  index_t size;
};
void sgd_step(const SgdTensor* tensors, index_t count, const SgdOptions& opt, cudaStream_t stream);

struct AdamOptions {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay;  // AdamW
  bool amsgrad, maximize;
  std::int64_t step;            // step count after this update (1 on the first)
};
struct AdamTensor {
  float* param;
  float* exp_avg;
  float* exp_avg_sq;
  float* max_exp_avg_sq;  // null unless amsgrad
  const float* grad;
  index_t size;
};
void adam_step(const AdamTensor* tensors, index_t count, const AdamOptions& opt, cudaStream_t stream);

}  // namespace fastmlp::cuda
