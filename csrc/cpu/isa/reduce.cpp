// Row and column sums of one instruction set (colsum is the bias gradient).
//
// colsum walks down the rows of a block of columns, adding four rows at a time into
// a float accumulator that stays in L1 (reading the matrix in memory order); every
// kRowBlock rows the block's sums move into double accumulators, so long columns
// keep their precision. Threads split the columns (never the rows), so each sum is
// formed in the same order whatever the thread count: results are bitwise the same
// with 1 or more threads.
#include "cpu/isa/isa.h"

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

constexpr index_t kColBlock = 1024;    // columns per accumulator block (4 KB of floats, in L1)
constexpr index_t kRowBlock = 64;      // rows summed in float before moving into double
constexpr index_t kRowChunk = 1024;    // row elements summed in float before moving into double
constexpr index_t kNarrow = 64;        // contiguous matrices narrower than this are refolded
constexpr index_t kReduceWork = 1 << 19;  // elements per thread before threads pay off (~30 µs)

// out[c0 + j] (+)= Σ_r x[r, c0 + j] for j < nc (nc <= kColBlock).
void colsum_block(float* out, const float* x, index_t rows, index_t nc, index_t ldx, bool accumulate) {
  float s[kColBlock];
  double d[kColBlock];
  for (index_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const index_t r1 = r0 + kRowBlock < rows ? r0 + kRowBlock : rows;
    const float* x0 = x + r0 * ldx;
#pragma omp simd
    for (index_t j = 0; j < nc; ++j) s[j] = x0[j];
    index_t r = r0 + 1;
    for (; r + 4 <= r1; r += 4) {
      const float* a = x + r * ldx;
      const float* b = a + ldx;
      const float* c = b + ldx;
      const float* e = c + ldx;
#pragma omp simd
      for (index_t j = 0; j < nc; ++j) s[j] += (a[j] + b[j]) + (c[j] + e[j]);
    }
    for (; r < r1; ++r) {
      const float* a = x + r * ldx;
#pragma omp simd
      for (index_t j = 0; j < nc; ++j) s[j] += a[j];
    }
    if (r0 == 0) {
#pragma omp simd
      for (index_t j = 0; j < nc; ++j) d[j] = s[j];
    } else {
#pragma omp simd
      for (index_t j = 0; j < nc; ++j) d[j] += s[j];
    }
  }
  if (rows <= 0) {
    for (index_t j = 0; j < nc; ++j) d[j] = 0.0;
  }
  if (accumulate) {
#pragma omp simd
    for (index_t j = 0; j < nc; ++j) out[j] += static_cast<float>(d[j]);
  } else {
#pragma omp simd
    for (index_t j = 0; j < nc; ++j) out[j] = static_cast<float>(d[j]);
  }
}

// out[c] (+)= Σ_r x[r, c]
void colsum_kernel(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate) {
  if (cols <= 0) return;
  if (cols < kNarrow && ldx == cols && rows >= 2 * (kNarrow / cols + 1)) {
    // A narrow contiguous matrix, read as [rows/k, k·cols]: whole vectors per row, and
    // the k partial sums of each column are added at the end.
    const index_t k = (kNarrow + cols - 1) / cols, width = k * cols, groups = rows / k;
    float wide[kNarrow + kNarrow];
    colsum_block(wide, x, groups, width, width, false);
    float tail[kNarrow];
    colsum_block(tail, x + groups * width, rows - groups * k, cols, ldx, false);
    for (index_t c = 0; c < cols; ++c) {
      float s = tail[c];
      for (index_t q = 0; q < k; ++q) s += wide[q * cols + c];
      out[c] = accumulate ? out[c] + s : s;
    }
    return;
  }
  // Blocks of whole columns; each column is summed in the same order whatever the
  // blocks, so they may follow the thread count.
  int nt = threads_for(rows * cols, kReduceWork);
  index_t width = (cols + nt - 1) / nt;
  width = (width + 15) / 16 * 16;
  if (width > kColBlock) width = kColBlock;
  const index_t nblocks = (cols + width - 1) / width;
  if (nt > nblocks) nt = static_cast<int>(nblocks);
  if (nt <= 1) {  // no parallel region for one thread (it costs about half a microsecond)
    for (index_t b = 0; b < nblocks; ++b) {
      const index_t c0 = b * width, nc = c0 + width < cols ? width : cols - c0;
      colsum_block(out + c0, x + c0, rows, nc, ldx, accumulate);
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (index_t b = 0; b < nblocks; ++b) {
    const index_t c0 = b * width, nc = c0 + width < cols ? width : cols - c0;
    colsum_block(out + c0, x + c0, rows, nc, ldx, accumulate);
  }
}

// Σ_c x[c] of one row: 64 float lanes (several SIMD registers, so the adds do not
// wait on each other), each summing at most kRowChunk/64 values before the chunk's
// total moves into a double.
double row_total(const float* x, index_t n) {
  constexpr int kLanes = 64;
  double total = 0.0;
  for (index_t c0 = 0; c0 < n; c0 += kRowChunk) {
    const index_t len = c0 + kRowChunk < n ? kRowChunk : n - c0;
    const float* xc = x + c0;
    float acc[kLanes] = {};
    index_t c = 0;
    for (; c + kLanes <= len; c += kLanes) {
#pragma omp simd
      for (int j = 0; j < kLanes; ++j) acc[j] += xc[c + j];
    }
    float rest = 0.0f;
    for (; c < len; ++c) rest += xc[c];
    for (int w = kLanes / 2; w >= 1; w /= 2) {  // pairwise across the lanes
#pragma omp simd
      for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
    }
    total += static_cast<double>(acc[0]) + rest;
  }
  return total;
}

// out[r] (+)= Σ_c x[r, c]
void rowsum_kernel(float* out, const float* x, index_t rows, index_t cols, index_t ldx, bool accumulate) {
  if (rows <= 0) return;
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * cols, kReduceWork))
  for (index_t r = 0; r < rows; ++r) {
    const float total = static_cast<float>(row_total(x + r * ldx, cols));
    out[r] = accumulate ? out[r] + total : total;
  }
}

}  // namespace

void fill_reduce(KernelTable& t) {
  t.colsum = colsum_kernel;
  t.rowsum = rowsum_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
