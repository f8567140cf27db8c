// Helpers shared by the pair-packed bfloat16 GEMM paths (bf16_dp.cpp, bf16_amx.cpp): a
// 32-bit lane holds the bfloat16 of op(X)[k] in its low half and of op(X)[k+1] in its high
// half (k even). Internal linkage only.
#pragma once

#include <cstdlib>

#include "cpu/gemm/epilogue.h"

namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl {
namespace {

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Pair-packing buffers of one thread, kept between calls (as the float32 path's workspace).
struct PairWorkspace {
  std::uint32_t* data = nullptr;
  size_t words = 0;
  ~PairWorkspace() { std::free(data); }
  std::uint32_t* get(size_t n) {
    if (n > words) {
      std::free(data);
      const size_t bytes = (n * sizeof(std::uint32_t) + 4095) / 4096 * 4096;
      data = static_cast<std::uint32_t*>(std::aligned_alloc(4096, bytes));
      words = data ? bytes / sizeof(std::uint32_t) : 0;
    }
    return data;
  }
};
thread_local PairWorkspace tls_pairs;

inline std::uint32_t pair_of(float lo, float hi) {
  return static_cast<std::uint32_t>(bf16_from_float(lo)) | (static_cast<std::uint32_t>(bf16_from_float(hi)) << 16);
}

inline float a_at(const Problem& p, index_t m, index_t k) {
  return p.trans_a ? p.A[k * p.lda + m] : p.A[m * p.lda + k];
}
inline float b_at(const Problem& p, index_t k, index_t n) {
  return p.trans_b ? p.B[n * p.ldb + k] : p.B[k * p.ldb + n];
}

}  // namespace
}  // namespace fastmlp::cpu::FASTMLP_ISA::gemm_impl
