// Row-wise softmax / log-softmax, the fused softmax cross-entropy, NLL and the
// label check that runs before them.
//
// Row kernels take TPR threads per row: a warp (32) for rows of up to
// kWarpRowMax columns, several rows per block, or the whole block (kThreads)
// for longer rows. Each thread strides over the row's columns; reductions are
// warp shuffles (plus one shared-memory step for a block), so the summation order
// is fixed. All math is float32 relative to the row maximum, with expf / logf
// (a few ulp): -log p_c = log Σ_j e^(z_j - max) - (z_c - max).
#include <cmath>

#include "cuda/device_util.cuh"
#include "cuda/kernels.cuh"

namespace fastmlp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr index_t kWarpRowMax = 2048;

template <int TPR>
__device__ __forceinline__ float row_sum(float v, float* scratch) {
  if constexpr (TPR == 32) return warp_sum(v);
  else return block_sum(v, scratch);
}

template <int TPR>
__device__ __forceinline__ float row_max(float v, float* scratch) {
  if constexpr (TPR == 32) return warp_max(v);
  else return block_max(v, scratch);
}

// The row this thread works on; every thread of a row (a warp, or the block) gets
// the same value, so `row >= rows` exits are uniform over each reduction group.
template <int TPR>
__device__ __forceinline__ index_t row_of_thread() {
  return static_cast<index_t>(blockIdx.x) * (kThreads / TPR) + threadIdx.x / TPR;
}

template <int TPR>
unsigned row_blocks(index_t rows) {
  return static_cast<unsigned>((rows + kThreads / TPR - 1) / (kThreads / TPR));
}

constexpr float kNegInf = -__builtin_huge_valf();

template <int TPR, bool LOG>
__global__ void __launch_bounds__(kThreads) softmax_forward_kernel(float* __restrict__ y, const float* __restrict__ x,
                                                                   index_t rows, index_t cols) {
  __shared__ float scratch[32];
  const index_t row = row_of_thread<TPR>();
  if (row >= rows) return;
  const int t = threadIdx.x % TPR;
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
  float mx = kNegInf;
  for (index_t c = t; c < cols; c += TPR) mx = fmaxf(mx, xr[c]);
  mx = row_max<TPR>(mx, scratch);
  float s = 0.0f;
  for (index_t c = t; c < cols; c += TPR) s += expf(xr[c] - mx);
  s = row_sum<TPR>(s, scratch);
  if (LOG) {
    const float ls = logf(s);
    for (index_t c = t; c < cols; c += TPR) yr[c] = (xr[c] - mx) - ls;
  } else {
    for (index_t c = t; c < cols; c += TPR) yr[c] = expf(xr[c] - mx) / s;
  }
}

template <int TPR, bool LOG>
__global__ void __launch_bounds__(kThreads) softmax_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                                                    const float* __restrict__ y, index_t rows,
                                                                    index_t cols) {
  __shared__ float scratch[32];
  const index_t row = row_of_thread<TPR>();
  if (row >= rows) return;
  const int t = threadIdx.x % TPR;
  const index_t base = row * cols;
  float s = 0.0f;
  for (index_t c = t; c < cols; c += TPR) s += LOG ? dy[base + c] : dy[base + c] * y[base + c];
  s = row_sum<TPR>(s, scratch);
  for (index_t c = t; c < cols; c += TPR)
    dx[base + c] = LOG ? dy[base + c] - expf(y[base + c]) * s : y[base + c] * (dy[base + c] - s);
}

template <int TPR>
__global__ void __launch_bounds__(kThreads) softmax_xent_kernel(
    float* __restrict__ dlogits, float* __restrict__ row_loss, double* __restrict__ row_loss64,
    const float* __restrict__ logits, const std::int64_t* __restrict__ labels, const float* __restrict__ w,
    index_t rows, index_t cols, std::int64_t ignore_index, float eps, float scale, float total_w) {
  __shared__ float scratch[32];
  const index_t row = row_of_thread<TPR>();
  if (row >= rows) return;
  const int t = threadIdx.x % TPR;
  const float* z = logits + row * cols;
  const std::int64_t y = labels[row];
  if (y == ignore_index || y < 0 || y >= cols) {  // uniform over the row's threads
    if (t == 0) {
      if (row_loss) row_loss[row] = 0.0f;
      if (row_loss64) row_loss64[row] = 0.0;
    }
    if (dlogits)
      for (index_t c = t; c < cols; c += TPR) dlogits[row * cols + c] = 0.0f;
    return;
  }
  float mx = kNegInf;
  for (index_t c = t; c < cols; c += TPR) mx = fmaxf(mx, z[c]);
  mx = row_max<TPR>(mx, scratch);
  float s = 0.0f;
  for (index_t c = t; c < cols; c += TPR) s += expf(z[c] - mx);
  const float log_sum = logf(row_sum<TPR>(s, scratch));
  const float wy = w ? w[y] : 1.0f;
  const float inv_c = eps / static_cast<float>(cols);
  float smooth = 0.0f;  // Σ_c w[c]·(-log p_c)
  if (dlogits || eps != 0.0f) {
    for (index_t c = t; c < cols; c += TPR) {
      const float nlp = log_sum - (z[c] - mx);
      const float wc = w ? w[c] : 1.0f;
      smooth += wc * nlp;
      if (dlogits) {
        const float p = expf(-nlp);
        const float g = (1.0f - eps) * wy * (p - (c == y ? 1.0f : 0.0f)) + inv_c * (total_w * p - wc);
        dlogits[row * cols + c] = g * scale;
      }
    }
  }
  if (eps != 0.0f) smooth = row_sum<TPR>(smooth, scratch);  // eps is uniform over the grid
  if (t == 0) {
    const double nly = static_cast<double>(log_sum) - (static_cast<double>(z[y]) - mx);
    const double loss = (1.0 - eps) * wy * nly + static_cast<double>(eps) / cols * smooth;
    if (row_loss) row_loss[row] = static_cast<float>(loss);
    if (row_loss64) row_loss64[row] = loss;
  }
}

// One warp per row: dlogp is zero except at the label.
__global__ void __launch_bounds__(kThreads) nll_kernel(float* __restrict__ dlogp, float* __restrict__ row_loss,
                                                       double* __restrict__ row_loss64, const float* __restrict__ logp,
                                                       const std::int64_t* __restrict__ labels,
                                                       const float* __restrict__ w, index_t rows, index_t cols,
                                                       std::int64_t ignore_index, float scale) {
  const index_t row = row_of_thread<32>();
  if (row >= rows) return;
  const int t = threadIdx.x % 32;
  const std::int64_t y = labels[row];
  const bool skip = y == ignore_index || y < 0 || y >= cols;
  const float wy = skip ? 0.0f : (w ? w[y] : 1.0f);
  if (dlogp)
    for (index_t c = t; c < cols; c += 32) dlogp[row * cols + c] = !skip && c == y ? -wy * scale : 0.0f;
  if (t == 0) {
    const double loss = skip ? 0.0 : -static_cast<double>(wy) * logp[row * cols + y];
    if (row_loss) row_loss[row] = static_cast<float>(loss);
    if (row_loss64) row_loss64[row] = loss;
  }
}

constexpr int kCheckThreads = 1024;

// One block: first bad row (atomicMin on an integer: order-free), and the weight
// sums in double, each thread striding in order, then a fixed-order block sum.
__global__ void __launch_bounds__(kCheckThreads) check_labels_kernel(LabelCheck* out,
                                                                     const std::int64_t* __restrict__ labels,
                                                                     const float* __restrict__ w, index_t rows,
                                                                     index_t classes, std::int64_t ignore_index) {
  __shared__ double scratch[32];
  __shared__ unsigned long long first_bad;
  if (threadIdx.x == 0) first_bad = ~0ull;
  __syncthreads();
  double ws = 0.0;
  for (index_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const std::int64_t y = labels[r];
    if (y == ignore_index) continue;
    if (y < 0 || y >= classes) {
      atomicMin(&first_bad, static_cast<unsigned long long>(r));
      continue;
    }
    ws += w ? static_cast<double>(w[y]) : 1.0;
  }
  ws = block_sum(ws, scratch);  // its barriers also order the atomicMin before the read below
  double cw = 0.0;
  for (index_t c = threadIdx.x; c < classes; c += blockDim.x) cw += w ? static_cast<double>(w[c]) : 1.0;
  cw = block_sum(cw, scratch);
  if (threadIdx.x == 0) {
    out->first_bad = first_bad;
    out->weight_sum = ws;
    out->class_weight_sum = cw;
  }
}

template <bool LOG>
void launch_softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t stream) {
  if (cols <= kWarpRowMax)
    softmax_forward_kernel<32, LOG><<<row_blocks<32>(rows), kThreads, 0, stream>>>(y, x, rows, cols);
  else
    softmax_forward_kernel<kThreads, LOG><<<row_blocks<kThreads>(rows), kThreads, 0, stream>>>(y, x, rows, cols);
  FASTMLP_CUDA_CHECK_LAUNCH("softmax_forward_kernel");
}

template <bool LOG>
void launch_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                             cudaStream_t stream) {
  if (cols <= kWarpRowMax)
    softmax_backward_kernel<32, LOG><<<row_blocks<32>(rows), kThreads, 0, stream>>>(dx, dy, y, rows, cols);
  else
    softmax_backward_kernel<kThreads, LOG>
        <<<row_blocks<kThreads>(rows), kThreads, 0, stream>>>(dx, dy, y, rows, cols);
  FASTMLP_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
}

}  // namespace

// y = softmax(x) or log_softmax(x), row-wise
void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (log) launch_softmax_forward<true>(y, x, rows, cols, stream);
  else launch_softmax_forward<false>(y, x, rows, cols, stream);
}

// dx = y ⊙ (dy - Σ dy·y)  or  dy - e^y·Σ dy
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, bool log,
                      cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (log) launch_softmax_backward<true>(dx, dy, y, rows, cols, stream);
  else launch_softmax_backward<false>(dx, dy, y, rows, cols, stream);
}

void check_labels(LabelCheck* result, const std::int64_t* labels, const float* class_weight, index_t rows,
                  index_t classes, std::int64_t ignore_index, cudaStream_t stream) {
  check_labels_kernel<<<1, kCheckThreads, 0, stream>>>(result, labels, class_weight, rows, classes, ignore_index);
  FASTMLP_CUDA_CHECK_LAUNCH("check_labels_kernel");
}

// loss_i = (1-ε)·w[y_i]·(-log p_iy) + (ε/C)·Σ_c w[c]·(-log p_ic)
void softmax_xent(float* dlogits, float* row_loss, double* row_loss64, const float* logits,
                  const std::int64_t* labels, const float* class_weight, index_t rows, index_t cols,
                  std::int64_t ignore_index, float label_smoothing, float grad_scale, double class_weight_sum,
                  cudaStream_t stream) {
  if (rows <= 0) return;
  if (cols <= 0) {  // every label is ignore_index (checked): the loss and gradient are empty or zero
    nll(dlogits, row_loss, row_loss64, logits, labels, class_weight, rows, cols, ignore_index, grad_scale, stream);
    return;
  }
  const float tw = static_cast<float>(class_weight_sum);
  if (cols <= kWarpRowMax)
    softmax_xent_kernel<32><<<row_blocks<32>(rows), kThreads, 0, stream>>>(
        dlogits, row_loss, row_loss64, logits, labels, class_weight, rows, cols, ignore_index, label_smoothing,
        grad_scale, tw);
  else
    softmax_xent_kernel<kThreads><<<row_blocks<kThreads>(rows), kThreads, 0, stream>>>(
        dlogits, row_loss, row_loss64, logits, labels, class_weight, rows, cols, ignore_index, label_smoothing,
        grad_scale, tw);
  FASTMLP_CUDA_CHECK_LAUNCH("softmax_xent_kernel");
}

// loss_i = -w[y_i]·logp[i, y_i]
void nll(float* dlogp, float* row_loss, double* row_loss64, const float* logp, const std::int64_t* labels,
         const float* class_weight, index_t rows, index_t cols, std::int64_t ignore_index, float grad_scale,
         cudaStream_t stream) {
  if (rows <= 0) return;
  nll_kernel<<<row_blocks<32>(rows), kThreads, 0, stream>>>(dlogp, row_loss, row_loss64, logp, labels, class_weight,
                                                            rows, cols, ignore_index, grad_scale);
  FASTMLP_CUDA_CHECK_LAUNCH("nll_kernel");
}

}  // namespace fastmlp::cuda
