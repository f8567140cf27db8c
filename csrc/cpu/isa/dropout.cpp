// Dropout of one instruction set (placeholder: the reference loops).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_dropout(KernelTable& t) {
  t.dropout_forward = ref::dropout_forward;
  t.dropout_backward = ref::dropout_backward;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
