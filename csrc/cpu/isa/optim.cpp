// Optimizer steps of one instruction set (placeholder: the reference loops).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_optim(KernelTable& t) {
  t.sgd_step = ref::sgd_step;
  t.adam_step = ref::adam_step;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
