// Losses of one instruction set: negative log-likelihood and the element-wise
// losses (the fused softmax cross entropy lives in softmax.cpp, beside the row
// softmax it builds on). Sums are accumulated per fixed block of elements and the
// blocks added in order, so they are bitwise the same for any thread count.
#include <cstring>

#include "common/mathfn.h"
#include "cpu/isa/isa.h"

namespace fastmlp::cpu::FASTMLP_ISA {

// Defined in softmax.cpp.
LossSums softmax_xent_kernel(float* dlogits, float* row_loss, const float* logits,
                             const std::int64_t* labels, const float* class_weight, index_t rows,
                             index_t cols, std::int64_t ignore_index, float label_smoothing,
                             float grad_scale, bool divide_by_weight_sum);

namespace {

// loss_i = -w[y_i]·logp[i, y_i] (0 where y_i == ignore_index)
// dlogp[i, c] = -scale·w[y_i]·[c = y_i], scale = grad_scale (/ Σ_i w[y_i] when asked)
LossSums nll_kernel(float* dlogp, float* row_loss, const float* logp, const std::int64_t* labels,
                    const float* class_weight, index_t rows, index_t cols, std::int64_t ignore_index,
                    float grad_scale, bool divide_by_weight_sum) {
  double wsum = 0.0, loss_sum = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    const std::int64_t y = labels[r];
    if (y == ignore_index) continue;
    const double wy = class_weight ? class_weight[y] : 1.0;
    wsum += wy;
    loss_sum += -wy * logp[r * cols + y];
  }
  if (row_loss) {
    for (index_t r = 0; r < rows; ++r) {
      const std::int64_t y = labels[r];
      row_loss[r] = y == ignore_index
                        ? 0.0f
                        : static_cast<float>(-(class_weight ? class_weight[y] : 1.0) * logp[r * cols + y]);
    }
  }
  if (dlogp) {
    const double scale = divide_by_weight_sum ? grad_scale / wsum : grad_scale;
    std::memset(dlogp, 0, sizeof(float) * static_cast<std::size_t>(rows * cols));
    for (index_t r = 0; r < rows; ++r) {
      const std::int64_t y = labels[r];
      if (y != ignore_index)
        dlogp[r * cols + y] = static_cast<float>(-(class_weight ? class_weight[y] : 1.0) * scale);
    }
  }
  return LossSums{loss_sum, wsum};
}

// ---- element-wise losses -------------------------------------------------------

// loss and ∂loss/∂x of one element, in float32.
template <PointwiseLoss K>
inline void loss_and_grad(float x, float t, float& l, float& g) {
  if (K == PointwiseLoss::MSE) {
    const float d = x - t;
    l = d * d;
    g = 2.0f * d;
  } else if (K == PointwiseLoss::L1) {
    const float d = x - t;
    l = d < 0.0f ? -d : d;
    g = fm_select(d > 0.0f, 1.0f, fm_select(d < 0.0f, -1.0f, 0.0f));
  } else if (K == PointwiseLoss::BCE) {
    // -(t·log x + (1-t)·log(1-x)), each log clamped at -100
    float lx = fm_log(x), l1x = fm_log1p(-x);
    lx = lx < -100.0f ? -100.0f : lx;
    l1x = l1x < -100.0f ? -100.0f : l1x;
    l = -(t * lx + (1.0f - t) * l1x);
    float den = (1.0f - x) * x;
    den = den < 1e-12f ? 1e-12f : den;
    g = (x - t) / den;
  } else {
    // max(x, 0) - x·t + log(1 + e^-|x|);  ∂/∂x = σ(x) - t
    const float a = x < 0.0f ? -x : x;
    const float e = fm_exp(-a);  // in (0, 1]
    l = (x > 0.0f ? x : 0.0f) - x * t + fm_log1p(e);
    const float inv = 1.0f / (1.0f + e);
    g = fm_select(x >= 0.0f, inv, e * inv) - t;
  }
}

// The sum of a block is formed in an order this code fixes, not the vectoriser: kLanes
// float lanes, lane j adding elements j, j + kLanes, ... of a group of kGroup elements
// (kGroup / kLanes = 16 values each), the lanes then added pairwise, and each group's
// float total added into a double. A float never sums more than 16 values in a row,
// so the result is accurate (a few float32 roundings, whatever n is) and the same in
// every build, vectorised or not (a sanitizer build, say).
constexpr int kLanes = 16;
constexpr index_t kGroup = 256;

inline float lanes_total(float* acc) {
  for (int w = kLanes / 2; w >= 1; w /= 2) {
#pragma omp simd
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0];
}

// Σ loss over [0, n) of one block, writing elem_loss / dinput as asked.
template <PointwiseLoss K, bool kWeight, bool kElem, bool kGrad>
double loss_block(float* dinput, float* elem_loss, const float* input, const float* target,
                  const float* weight, index_t n, float grad_scale) {
  auto one = [&](index_t i, float& acc) {
    float l, g;
    loss_and_grad<K>(input[i], target[i], l, g);
    if (kWeight) {
      l *= weight[i];
      g *= weight[i];
    }
    acc += l;
    if (kElem) elem_loss[i] = l;
    if (kGrad) dinput[i] = grad_scale * g;
  };
  double total = 0.0;
  for (index_t i0 = 0; i0 < n; i0 += kGroup) {
    const index_t len = i0 + kGroup < n ? kGroup : n - i0;
    float acc[kLanes] = {};
    index_t k = 0;
    for (; k + kLanes <= len; k += kLanes) {
      const index_t base = i0 + k;
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) one(base + j, acc[j]);
    }
    for (int j = 0; k + j < len; ++j) one(i0 + k + j, acc[j]);
    total += lanes_total(acc);
  }
  return total;
}

using LossBlockFn = double (*)(float*, float*, const float*, const float*, const float*, index_t, float);

template <PointwiseLoss K>
LossBlockFn pick_block(bool w, bool elem, bool grad) {
  const int code = (w ? 4 : 0) | (elem ? 2 : 0) | (grad ? 1 : 0);
  switch (code) {
    case 0: return loss_block<K, false, false, false>;
    case 1: return loss_block<K, false, false, true>;
    case 2: return loss_block<K, false, true, false>;
    case 3: return loss_block<K, false, true, true>;
    case 4: return loss_block<K, true, false, false>;
    case 5: return loss_block<K, true, false, true>;
    case 6: return loss_block<K, true, true, false>;
    default: return loss_block<K, true, true, true>;
  }
}

// Called from the OpenMP region: nothrow spares the region exception-handling tables.
[[gnu::nothrow]] double run_block(LossBlockFn fn, float* dinput, float* elem_loss, const float* input,
                                  const float* target, const float* weight, index_t n, float grad_scale) {
  return fn(dinput, elem_loss, input, target, weight, n, grad_scale);
}

// Elements per block of the sum: the blocks add in double.
constexpr index_t kLossBlock = 4096;
constexpr index_t kMaxPartials = 1024;

// Σ_i w_i·loss(x_i, t_i); elem_loss = w·loss and dinput = grad_scale·w·∂loss/∂x when not null.
//   mse: (x-t)²   l1: |x-t|   bce: -(t·log x + (1-t)·log(1-x))   bce_logits: see loss_and_grad
double pointwise_loss_kernel(float* dinput, float* elem_loss, const float* input, const float* target,
                             const float* weight, index_t n, PointwiseLoss kind, float grad_scale) {
  if (n <= 0) return 0.0;
  const bool w = weight != nullptr, e = elem_loss != nullptr, g = dinput != nullptr;
  LossBlockFn fn;
  switch (kind) {
    case PointwiseLoss::MSE: fn = pick_block<PointwiseLoss::MSE>(w, e, g); break;
    case PointwiseLoss::L1: fn = pick_block<PointwiseLoss::L1>(w, e, g); break;
    case PointwiseLoss::BCE: fn = pick_block<PointwiseLoss::BCE>(w, e, g); break;
    default: fn = pick_block<PointwiseLoss::BCEWithLogits>(w, e, g); break;
  }
  // Block size depends on n only, so the partial sums do not depend on the threads.
  index_t block = (n + kMaxPartials - 1) / kMaxPartials;
  if (block < kLossBlock) block = kLossBlock;
  const index_t nblocks = (n + block - 1) / block;
  double partial[kMaxPartials];
  // Threads for more than ~30 µs of work per thread (the logs and exps cost ~8x an add).
  const int cost = kind == PointwiseLoss::MSE || kind == PointwiseLoss::L1 ? 1 : 8;
#pragma omp parallel for schedule(static) num_threads(threads_for(n * cost, 1 << 19))
  for (index_t b = 0; b < nblocks; ++b) {
    const index_t i0 = b * block, len = i0 + block < n ? block : n - i0;
    partial[b] = run_block(fn, dinput ? dinput + i0 : nullptr, elem_loss ? elem_loss + i0 : nullptr,
                           input + i0, target + i0, weight ? weight + i0 : nullptr, len, grad_scale);
  }
  double sum = 0.0;
  for (index_t b = 0; b < nblocks; ++b) sum += partial[b];
  return sum;
}

}  // namespace

void fill_loss(KernelTable& t) {
  t.softmax_xent = softmax_xent_kernel;
  t.nll = nll_kernel;
  t.pointwise_loss = pointwise_loss_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
