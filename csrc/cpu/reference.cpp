// Naive reference kernels: the plainest loops that implement each entry of the
// KernelTable (no SIMD intrinsics, no OpenMP, double accumulators where a sum is
// long). They are the "reference" instruction set of fastmlp._C, the oracle the
// tests compare the fast kernels against, and the fallback for tiny shapes.
#include "cpu/reference.h"

#include <algorithm>
#include <cmath>

#include "common/adam.h"
#include "common/bf16.h"
#include "common/philox.h"

namespace fastmlp::cpu::ref {

namespace {

// C[M,N] = act(alpha·op(A)·op(B) + beta·C + bias); with kBf16 the operands are rounded to
// bfloat16 first (the products are exact in double either way).
template <bool kBf16>
void gemm_impl(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb, index_t M,
               index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta, const GemmEpilogue& ep) {
  auto operand = [](float v) { return kBf16 ? round_to_bf16(v) : v; };
  for (index_t m = 0; m < M; ++m) {
    for (index_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (index_t k = 0; k < K; ++k) {
        const float a = operand(trans_a ? A[k * lda + m] : A[m * lda + k]);
        const float b = operand(trans_b ? B[n * ldb + k] : B[k * ldb + n]);
        acc += static_cast<double>(a) * b;
      }
      float z = alpha * static_cast<float>(acc);
      if (beta != 0.0f) z += beta * C[m * ldc + n];
      if (ep.bias()) z += ep.bias()[n];
      if (ep.preact()) ep.preact()[m * ep.ldz() + n] = z;
      C[m * ldc + n] = act_forward(ep.act(), z, ep.act_param());
      if (ep.weights()) {
        volatile float step = ep.sgd.lr * C[m * ldc + n];  // rounded on its own, as sgd_step does
        ep.weights()[m * ep.sgd.ldw + n] -= step;
      }
    }
  }
}

}  // namespace

void gemm(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb, index_t M, index_t N,
          index_t K, bool trans_a, bool trans_b, float alpha, float beta, const GemmEpilogue& ep) {
  gemm_impl<false>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep);
}

void gemm_bf16(float* C, index_t ldc, const float* A, index_t lda, const float* B, index_t ldb, index_t M,
               index_t N, index_t K, bool trans_a, bool trans_b, float alpha, float beta, const GemmEpilogue& ep) {
  gemm_impl<true>(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta, ep);
}

void f32_to_bf16(std::uint16_t* dst, const float* src, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = bf16_from_float(src[i]);
}

void bf16_to_f32(float* dst, const std::uint16_t* src, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = float_from_bf16(src[i]);
}

void act_forward_ref(float* y, const float* x, index_t n, Act act, float param) {
  for (index_t i = 0; i < n; ++i) y[i] = act_forward(act, x[i], param);
}

void act_backward_ref(float* dx, const float* dy, const float* saved, index_t n, Act act,
                      float param, bool accumulate) {
  for (index_t i = 0; i < n; ++i) {
    const float g = act_backward(act, dy[i], act == Act::Identity ? 0.0f : saved[i], param);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
    for (index_t c = 0; c < cols; ++c) mx = std::max(mx, xr[c]);
    double sum = 0.0;
    for (index_t c = 0; c < cols; ++c) sum += std::exp(static_cast<double>(xr[c]) - mx);
    const double lse = mx + std::log(sum);
    for (index_t c = 0; c < cols; ++c) {
      const double lp = xr[c] - lse;
      yr[c] = static_cast<float>(log ? lp : std::exp(lp));
    }
  }
}

void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                      bool log) {
  for (index_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * cols;
    const float* yr = y + r * cols;
    double s = 0.0;
    for (index_t c = 0; c < cols; ++c) s += log ? dyr[c] : static_cast<double>(dyr[c]) * yr[c];
    for (index_t c = 0; c < cols; ++c) {
      const double g = log ? dyr[c] - std::exp(static_cast<double>(yr[c])) * s : yr[c] * (dyr[c] - s);
      dx[r * cols + c] = static_cast<float>(g);
    }
  }
}

namespace {
double weight_sum_of(const std::int64_t* labels, const float* w, index_t rows, std::int64_t ignore) {
  double s = 0.0;
  for (index_t r = 0; r < rows; ++r)
    if (labels[r] != ignore) s += w ? w[labels[r]] : 1.0;
  return s;
}
}  // namespace

LossSums softmax_xent(float* dlogits, float* row_loss, const float* logits,
                      const std::int64_t* labels, const float* class_weight, index_t rows,
                      index_t cols, std::int64_t ignore_index, float label_smoothing,
                      float grad_scale, bool divide_by_weight_sum) {
  const double wsum = weight_sum_of(labels, class_weight, rows, ignore_index);
  const double scale = divide_by_weight_sum ? grad_scale / wsum : grad_scale;
  const double eps = label_smoothing;
  double total_w = 0.0;  // Σ_c w[c]
  for (index_t c = 0; c < cols; ++c) total_w += class_weight ? class_weight[c] : 1.0;
  double loss_sum = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    const float* z = logits + r * cols;
    const std::int64_t y = labels[r];
    if (y == ignore_index) {
      if (row_loss) row_loss[r] = 0.0f;
      if (dlogits) std::fill(dlogits + r * cols, dlogits + (r + 1) * cols, 0.0f);
      continue;
    }
    double mx = -INFINITY;
    for (index_t c = 0; c < cols; ++c) mx = std::max(mx, static_cast<double>(z[c]));
    double sum = 0.0;
    for (index_t c = 0; c < cols; ++c) sum += std::exp(z[c] - mx);
    const double lse = mx + std::log(sum);
    const double wy = class_weight ? class_weight[y] : 1.0;
    double smooth = 0.0;  // Σ_c w[c]·(-log p_c)
    if (eps != 0.0)
      for (index_t c = 0; c < cols; ++c) smooth += (class_weight ? class_weight[c] : 1.0) * (lse - z[c]);
    const double loss = (1.0 - eps) * wy * (lse - z[y]) + eps / cols * smooth;
    loss_sum += loss;
    if (row_loss) row_loss[r] = static_cast<float>(loss);
    if (dlogits) {
      for (index_t c = 0; c < cols; ++c) {
        const double p = std::exp(z[c] - lse);
        const double wc = class_weight ? class_weight[c] : 1.0;
        double g = (1.0 - eps) * wy * (p - (c == y ? 1.0 : 0.0)) + eps / cols * (total_w * p - wc);
        dlogits[r * cols + c] = static_cast<float>(g * scale);
      }
    }
  }
  return LossSums{loss_sum, wsum};
}

LossSums nll(float* dlogp, float* row_loss, const float* logp, const std::int64_t* labels,
             const float* class_weight, index_t rows, index_t cols, std::int64_t ignore_index,
             float grad_scale, bool divide_by_weight_sum) {
  const double wsum = weight_sum_of(labels, class_weight, rows, ignore_index);
  const double scale = divide_by_weight_sum ? grad_scale / wsum : grad_scale;
  double loss_sum = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    const std::int64_t y = labels[r];
    if (dlogp) std::fill(dlogp + r * cols, dlogp + (r + 1) * cols, 0.0f);
    if (y == ignore_index) {
      if (row_loss) row_loss[r] = 0.0f;
      continue;
    }
    const double wy = class_weight ? class_weight[y] : 1.0;
    const double loss = -wy * logp[r * cols + y];
    loss_sum += loss;
    if (row_loss) row_loss[r] = static_cast<float>(loss);
    if (dlogp) dlogp[r * cols + y] = static_cast<float>(-wy * scale);
  }
  return LossSums{loss_sum, wsum};
}

double pointwise_loss(float* dinput, float* elem_loss, const float* input, const float* target,
                      const float* weight, index_t n, PointwiseLoss kind, float grad_scale) {
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const double x = input[i], t = target[i], w = weight ? weight[i] : 1.0;
    double l = 0.0, g = 0.0;
    switch (kind) {
      case PointwiseLoss::MSE: l = (x - t) * (x - t); g = 2.0 * (x - t); break;
      case PointwiseLoss::L1: l = std::fabs(x - t); g = x > t ? 1.0 : (x < t ? -1.0 : 0.0); break;
      case PointwiseLoss::BCE:
        l = -(t * std::max(std::log(x), -100.0) + (1.0 - t) * std::max(std::log1p(-x), -100.0));
        g = (x - t) / std::max((1.0 - x) * x, 1e-12);
        break;
      case PointwiseLoss::BCEWithLogits:
        l = std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
        g = 1.0 / (1.0 + std::exp(-x)) - t;
        break;
    }
    sum += w * l;
    if (elem_loss) elem_loss[i] = static_cast<float>(w * l);
    if (dinput) dinput[i] = static_cast<float>(grad_scale * w * g);
  }
  return sum;
}

void colsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate) {
  for (index_t c = 0; c < cols; ++c) {
    double s = 0.0;
    for (index_t r = 0; r < rows; ++r) s += x[r * ldx + c];
    out[c] = accumulate ? out[c] + static_cast<float>(s) : static_cast<float>(s);
  }
}

void rowsum(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate) {
  for (index_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (index_t c = 0; c < cols; ++c) s += x[r * ldx + c];
    out[r] = accumulate ? out[r] + static_cast<float>(s) : static_cast<float>(s);
  }
}

void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset) {
  const std::uint32_t threshold = dropout_threshold(p);
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (index_t i = 0; i < n; ++i) {
    const bool keep = p < 1.0f && philox_bits(seed, offset, static_cast<std::uint64_t>(i)) >= threshold;
    if (mask) mask[i] = keep ? 1 : 0;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
}

void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p,
                      bool accumulate) {
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (index_t i = 0; i < n; ++i) {
    const float g = mask[i] ? dy[i] * scale : 0.0f;
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

// torch.optim.SGD: d_p = ±g + wd·p; buf = μ·buf + (1-τ)·d_p (buf = d_p on the first step);
// d_p = d_p + μ·buf (Nesterov) or buf; p -= lr·d_p
void sgd_step(float* const* params, float* const* momentum_bufs, const float* const* grads,
              const index_t* sizes, index_t count, const SgdOptions& o) {
  for (index_t t = 0; t < count; ++t) {
    float* p = params[t];
    const float* g = grads[t];
    float* buf = momentum_bufs ? momentum_bufs[t] : nullptr;
    for (index_t i = 0; i < sizes[t]; ++i) {
      float d = o.maximize ? -g[i] : g[i];
      if (o.weight_decay != 0.0f) d += o.weight_decay * p[i];
      if (o.momentum != 0.0f) {
        buf[i] = o.first_step ? d : o.momentum * buf[i] + (1.0f - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * d;
    }
  }
}

// torch.optim.Adam / AdamW: g = ±g (+ wd·p for Adam; p *= 1 - lr·wd for AdamW);
// m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; v̂ = max(v̂, v) with amsgrad;
// p -= lr/(1-β1^t) · m / (sqrt(v or v̂)/sqrt(1-β2^t) + eps)
void adam_step(float* const* params, float* const* exp_avgs, float* const* exp_avg_sqs,
               float* const* max_exp_avg_sqs, const float* const* grads, const index_t* sizes,
               index_t count, const AdamOptions& o) {
  const AdamScalars s = adam_scalars(o.lr, o.beta1, o.beta2, o.eps, o.step);
  const FlushDenormals flush;  // as the SIMD kernels: common/adam.h
  for (index_t t = 0; t < count; ++t) {
    float* p = params[t];
    float* m = exp_avgs[t];
    float* v = exp_avg_sqs[t];
    float* vmax = o.amsgrad ? max_exp_avg_sqs[t] : nullptr;
    const float* g = grads[t];
    for (index_t i = 0; i < sizes[t]; ++i) {
      float gi = o.maximize ? -g[i] : g[i];
      if (o.weight_decay != 0.0f) {
        if (o.decoupled_weight_decay) p[i] *= 1.0f - o.lr * o.weight_decay;
        else gi += o.weight_decay * p[i];
      }
      m[i] += (1.0f - o.beta1) * (gi - m[i]);
      v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * gi * gi;
      float vv = v[i];
      if (vmax) {
        vmax[i] = std::max(vmax[i], v[i]);
        vv = vmax[i];
      }
      const float denom = std::sqrt(vv) + s.eps_hat;  // sqrt(vv)/sqrt(1-β2^t) + eps, scaled: common/adam.h
      p[i] -= s.step_size * (m[i] / denom);
    }
  }
}

void fill_reference(KernelTable& t) {
  t.isa = "reference";
  t.gemm = gemm;
  t.gemm_bf16 = gemm_bf16;
  t.gemm_bf16_pairs = gemm_bf16;
  t.gemm_bf16_amx = gemm_bf16;
  t.bf16_path = "reference (double sums of bfloat16-rounded operands)";
  t.f32_to_bf16 = f32_to_bf16;
  t.bf16_to_f32 = bf16_to_f32;
  t.act_forward = act_forward_ref;
  t.act_backward = act_backward_ref;
  t.softmax_forward = softmax_forward;
  t.softmax_backward = softmax_backward;
  t.softmax_xent = softmax_xent;
  t.nll = nll;
  t.pointwise_loss = pointwise_loss;
  t.colsum = colsum;
  t.rowsum = rowsum;
  t.dropout_forward = dropout_forward;
  t.dropout_backward = dropout_backward;
  t.sgd_step = sgd_step;
  t.adam_step = adam_step;
}

}  // namespace fastmlp::cpu::ref
