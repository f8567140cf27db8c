// Register-only loops that measure the arithmetic peak the GEMM kernels aim at: on
// every thread, independent chains of the kernel's multiply-add instruction on
// values that never leave the registers. The benchmarks time them to print GEMM
// rates as a fraction of the peak.
//   peak_fma   the float32 FMA of this set (vfmadd on AVX2 / AVX-512; a multiply and an
//              add in SSE2 registers for the generic set): 2 flops per lane.
//   peak_bf16  the bfloat16 GEMM's instruction: vdpbf16ps where the set has AVX512-BF16
//              (two products and two adds per float32 lane: 4 flops), else the float32 FMA,
//              which is what the bfloat16 GEMM then runs on. (The amx set's GEMM runs on
//              tiles, whose peak this loop does not measure: it times vdpbf16ps there too.)
#include "cpu/gemm/simd.h"

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

// Enough independent chains to cover the FMA latency on two ports.
constexpr int kChains = 12;

template <typename Body>
double run_chains(index_t iters, double flops_per_lane_op, Body body) {
  const int nt = omp_get_max_threads();
  float sink = 0.0f;
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    vf acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = vset1(1e-3f * static_cast<float>(j + omp_get_thread_num()));
    body(iters, acc);
    vf s = acc[0];
    for (int j = 1; j < kChains; ++j) s = vadd(s, acc[j]);
    alignas(64) float out[kW];
    vstore(out, s);
    sink += out[0];
  }
  volatile float keep = sink;  // the loops must not be optimised away
  (void)keep;
  return static_cast<double>(nt) * static_cast<double>(iters) * kChains * kW * flops_per_lane_op;
}

double peak_fma(index_t iters) {
  return run_chains(iters, 2.0, [](index_t n, vf (&acc)[kChains]) {
    vf a = vset1(0.999999f), b = vset1(1e-7f);
    in_register(a);
    in_register(b);
    for (index_t i = 0; i < n; ++i) {
#pragma GCC unroll 12
      for (int j = 0; j < kChains; ++j) acc[j] = vfma(acc[j], a, b);
    }
  });
}

double peak_bf16(index_t iters) {
#if defined(__AVX512BF16__)
  return run_chains(iters, 4.0, [](index_t n, vf (&acc)[kChains]) {
    __m512i ai = _mm512_set1_epi32(0x3F803F80), bi = _mm512_set1_epi32(0x33D633D6);  // pairs of 1.0, 1e-7
    __m512bh a, b;
    __builtin_memcpy(&a, &ai, sizeof a);
    __builtin_memcpy(&b, &bi, sizeof b);
    __asm__("" : "+v"(a), "+v"(b));
    for (index_t i = 0; i < n; ++i) {
#pragma GCC unroll 12
      for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    }
  });
#else
  return peak_fma(iters);
#endif
}

}  // namespace

void fill_peak(KernelTable& t) {
  t.peak_fma = peak_fma;
  t.peak_bf16 = peak_bf16;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
