// Multi-tensor SGD and Adam/AdamW steps: one launch updates up to
// kMaxTensorsPerLaunch tensors. The tensors' pointers and the prefix sums of their
// sizes travel in the kernel's parameter block (a table in constant memory, copied
// at launch), which views them as one concatenated vector; block b updates the
// elements [b·kChunk, (b+1)·kChunk) of that vector, finding the tensor of its
// first element by binary search and moving to the next tensor as it crosses
// boundaries (empty tensors are skipped). Per-element math is PyTorch's, in the
// order of cpu/reference.cpp; factors the CPU computes once are computed on the
// host here too, so both see the same float values.
#include <cmath>

#include "common/adam.h"
#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr index_t kChunk = 16 * kThreads;
constexpr int kMax = kMaxTensorsPerLaunch;

struct SgdTable {
  float* param[kMax];
  float* buf[kMax];
  const float* grad[kMax];
  index_t start[kMax + 1];  // start[t] = Σ_{u<t} size[u]; start[count] = total
  int count;
};

struct AdamTable {
  float* param[kMax];
  float* m[kMax];
  float* v[kMax];
  float* vmax[kMax];
  const float* grad[kMax];
  index_t start[kMax + 1];
  int count;
};
static_assert(sizeof(AdamTable) + 64 <= 4096, "the table must fit in the 4 KB kernel parameter block");

struct SgdConsts {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, first_step;
};

struct AdamConsts {
  float lr, one_minus_beta1, beta2, one_minus_beta2, weight_decay, decay_factor, step_size, eps_hat;
  bool decoupled, amsgrad, maximize;
};

// Last t in [0, count) with start[t] <= i (start is non-decreasing, start[0] = 0).
__device__ __forceinline__ int tensor_of(const index_t* start, int count, index_t i) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (start[mid] <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// torch.optim.SGD: d_p = ±g + wd·p; buf = μ·buf + (1-τ)·d_p (buf = d_p on the first step);
// d_p = d_p + μ·buf (Nesterov) or buf; p -= lr·d_p
__global__ void __launch_bounds__(kThreads) sgd_kernel(const SgdTable tab, const SgdConsts k) {
  const index_t total = tab.start[tab.count];
  const index_t begin = static_cast<index_t>(blockIdx.x) * kChunk;
  const index_t end = begin + kChunk < total ? begin + kChunk : total;
  int t = tensor_of(tab.start, tab.count, begin);
  for (index_t i = begin + threadIdx.x; i < end; i += kThreads) {
    while (i >= tab.start[t + 1]) ++t;  // terminates: i < total = start[count]
    const index_t j = i - tab.start[t];
    float* p = tab.param[t];
    const float gj = tab.grad[t][j];
    float pj = p[j];
    float d = k.maximize ? -gj : gj;
    if (k.weight_decay != 0.0f) d += k.weight_decay * pj;
    if (k.momentum != 0.0f) {
      float* buf = tab.buf[t];
      const float b = k.first_step ? d : k.momentum * buf[j] + k.one_minus_dampening * d;
      buf[j] = b;
      d = k.nesterov ? d + k.momentum * b : b;
    }
    pj -= k.lr * d;
    p[j] = pj;
  }
}

// torch.optim.Adam / AdamW: g = ±g (+ wd·p for Adam; p *= 1 - lr·wd for AdamW);
// m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; v̂ = max(v̂, v) with amsgrad;
// p -= lr/(1-β1^t) · m / (sqrt(v or v̂)/sqrt(1-β2^t) + eps)
__global__ void __launch_bounds__(kThreads) adam_kernel(const AdamTable tab, const AdamConsts k) {
  const index_t total = tab.start[tab.count];
  const index_t begin = static_cast<index_t>(blockIdx.x) * kChunk;
  const index_t end = begin + kChunk < total ? begin + kChunk : total;
  int t = tensor_of(tab.start, tab.count, begin);
  for (index_t i = begin + threadIdx.x; i < end; i += kThreads) {
    while (i >= tab.start[t + 1]) ++t;
    const index_t j = i - tab.start[t];
    float* p = tab.param[t];
    float* m = tab.m[t];
    float* v = tab.v[t];
    const float gj = tab.grad[t][j];
    float pj = p[j];
    float gi = k.maximize ? -gj : gj;
    if (k.weight_decay != 0.0f) {
      if (k.decoupled) pj *= k.decay_factor;
      else gi += k.weight_decay * pj;
    }
    float mj = m[j];
    mj += k.one_minus_beta1 * (gi - mj);
    const float vj = k.beta2 * v[j] + k.one_minus_beta2 * gi * gi;
    float vv = vj;
    if (k.amsgrad) {
      float* vmax = tab.vmax[t];
      const float old = vmax[j];
      vv = old < vj ? vj : old;  // std::max(old, vj)
      vmax[j] = vv;
    }
    const float denom = sqrtf(vv) + k.eps_hat;  // the CPU kernels' form: common/adam.h
    pj -= k.step_size * (mj / denom);
    p[j] = pj;
    m[j] = mj;
    v[j] = vj;
  }
}

// Calls fill(table, first, n) for each group of at most kMax tensors, then launches
// over the group's total size (skipping empty groups).
template <typename Table, typename Fill, typename Launch>
void for_each_group(index_t count, Fill fill, Launch launch) {
  for (index_t first = 0; first < count; first += kMax) {
    const int n = static_cast<int>(count - first < kMax ? count - first : kMax);
    Table tab{};
    tab.count = n;
    tab.start[0] = 0;
    fill(tab, first, n);
    const index_t total = tab.start[n];
    if (total > 0) launch(tab, static_cast<unsigned>((total + kChunk - 1) / kChunk));
  }
}

}  // namespace

void sgd_step(const SgdTensor* tensors, index_t count, const SgdOptions& o, cudaStream_t stream) {
  const SgdConsts k{o.lr, o.momentum, 1.0f - o.dampening, o.weight_decay, o.nesterov, o.maximize, o.first_step};
  for_each_group<SgdTable>(
      count,
      [&](SgdTable& tab, index_t first, int n) {
        for (int u = 0; u < n; ++u) {
          const SgdTensor& s = tensors[first + u];
          tab.param[u] = s.param;
          tab.buf[u] = s.momentum_buf;
          tab.grad[u] = s.grad;
          tab.start[u + 1] = tab.start[u] + s.size;
        }
      },
      [&](const SgdTable& tab, unsigned blocks) {
        sgd_kernel<<<blocks, kThreads, 0, stream>>>(tab, k);
        FASTMLP_CUDA_CHECK_LAUNCH("sgd_kernel");
      });
}

void adam_step(const AdamTensor* tensors, index_t count, const AdamOptions& o, cudaStream_t stream) {
  const AdamScalars s = adam_scalars(o.lr, o.beta1, o.beta2, o.eps, o.step);
  AdamConsts k;
  k.lr = o.lr;
  k.one_minus_beta1 = 1.0f - o.beta1;
  k.beta2 = o.beta2;
  k.one_minus_beta2 = 1.0f - o.beta2;
  k.weight_decay = o.weight_decay;
  k.decay_factor = 1.0f - o.lr * o.weight_decay;
  k.step_size = s.step_size;
  k.eps_hat = s.eps_hat;
  k.decoupled = o.decoupled_weight_decay;
  k.amsgrad = o.amsgrad;
  k.maximize = o.maximize;
  for_each_group<AdamTable>(
      count,
      [&](AdamTable& tab, index_t first, int n) {
        for (int u = 0; u < n; ++u) {
          const AdamTensor& s = tensors[first + u];
          tab.param[u] = s.param;
          tab.m[u] = s.exp_avg;
          tab.v[u] = s.exp_avg_sq;
          tab.vmax[u] = s.max_exp_avg_sq;
          tab.grad[u] = s.grad;
          tab.start[u + 1] = tab.start[u] + s.size;
        }
      },
      [&](const AdamTable& tab, unsigned blocks) {
        adam_kernel<<<blocks, kThreads, 0, stream>>>(tab, k);
        FASTMLP_CUDA_CHECK_LAUNCH("adam_kernel");
      });
}

}  // namespace fastmlp::cuda
