// GEMM entry point of one instruction set (placeholder: the naive reference loop).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_gemm(KernelTable& t) { t.gemm = ref::gemm; }

}  // namespace fastmlp::cpu::FASTMLP_ISA
