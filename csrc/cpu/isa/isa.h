// Included first by every source that is compiled once per instruction set.
// FASTMLP_ISA (generic, avx2, avx512 or avx512bf16) names the copy being compiled; all of a
// copy's code lives in namespace fastmlp::cpu::FASTMLP_ISA, and its helpers are
// static, so copies built with different flags never mix at link time.
#pragma once

#include <omp.h>

#include "cpu/kernels.h"

#ifndef FASTMLP_ISA
#error "FASTMLP_ISA must name the instruction set being compiled"
#endif

#define FASTMLP_STR2(x) #x
#define FASTMLP_STR(x) FASTMLP_STR2(x)

namespace fastmlp::cpu::FASTMLP_ISA {

// Each kernel family fills its entries of the table.
void fill_gemm(KernelTable& t);
void fill_activation(KernelTable& t);
void fill_softmax(KernelTable& t);
void fill_loss(KernelTable& t);
void fill_reduce(KernelTable& t);
void fill_dropout(KernelTable& t);
void fill_optim(KernelTable& t);
void fill_bf16(KernelTable& t);
void fill_peak(KernelTable& t);

// Fork threads only when the work is large enough to pay for it: starting a
// parallel region costs about as much as a few tens of thousands of flops. A kernel
// called inside a parallel region (on one thread's share of a larger job, see
// mlp_step.cpp) runs on that thread alone.
static inline int threads_for(index_t work, index_t min_work_per_thread = 1 << 15) {
  if (omp_in_parallel()) return 1;
  const index_t by_work = work / min_work_per_thread;
  const int avail = omp_get_max_threads();
  if (by_work <= 1) return 1;
  return by_work < avail ? static_cast<int>(by_work) : avail;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
