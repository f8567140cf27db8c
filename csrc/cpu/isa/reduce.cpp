// Reductions of one instruction set (placeholder: the reference loops).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_reduce(KernelTable& t) {
  t.colsum = ref::colsum;
  t.rowsum = ref::rowsum;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
