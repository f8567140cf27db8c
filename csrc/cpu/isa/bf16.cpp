// float32 <-> bfloat16 array conversions (rounding as in common/bf16.h). The loops are
// branch-free per element, so the compiler vectorises them for each instruction set.
#include "common/bf16.h"

#include "cpu/isa/isa.h"

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

void f32_to_bf16_range(std::uint16_t* __restrict dst, const float* __restrict src, index_t n) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) dst[i] = bf16_from_float(src[i]);
}

void bf16_to_f32_range(float* __restrict dst, const std::uint16_t* __restrict src, index_t n) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) dst[i] = float_from_bf16(src[i]);
}

// A memory-bound pass: a second thread pays only for long arrays.
constexpr index_t kMinPerThread = index_t(1) << 17;

// range(dst, src, n) over [0, n), split in equal parts over the threads long arrays pay for.
template <typename D, typename S>
void in_parts(void (*range)(D*, const S*, index_t), D* dst, const S* src, index_t n) {
  const int nt = threads_for(n, kMinPerThread);
  if (nt <= 1) {
    range(dst, src, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), c = omp_get_num_threads();
    const index_t i0 = t * n / c, i1 = (t + 1) * n / c;
    range(dst + i0, src + i0, i1 - i0);
  }
}

void f32_to_bf16(std::uint16_t* dst, const float* src, index_t n) { in_parts(f32_to_bf16_range, dst, src, n); }

void bf16_to_f32(float* dst, const std::uint16_t* src, index_t n) { in_parts(bf16_to_f32_range, dst, src, n); }

}  // namespace

void fill_bf16(KernelTable& t) {
  t.f32_to_bf16 = f32_to_bf16;
  t.bf16_to_f32 = bf16_to_f32;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
