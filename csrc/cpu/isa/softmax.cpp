// Row softmax / log-softmax of one instruction set (placeholder: the reference loops).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_softmax(KernelTable& t) {
  t.softmax_forward = ref::softmax_forward;
  t.softmax_backward = ref::softmax_backward;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
