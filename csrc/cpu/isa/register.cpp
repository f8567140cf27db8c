#include "cpu/isa/isa.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_table(KernelTable& t) {
  t.isa = FASTMLP_STR(FASTMLP_ISA);
  fill_gemm(t);
  fill_activation(t);
  fill_softmax(t);
  fill_loss(t);
  fill_reduce(t);
  fill_dropout(t);
  fill_optim(t);
  fill_bf16(t);
  fill_peak(t);
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
