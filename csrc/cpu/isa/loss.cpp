// Losses of one instruction set (placeholder: the reference loops).
#include "cpu/isa/isa.h"
#include "cpu/reference.h"

namespace fastmlp::cpu::FASTMLP_ISA {

void fill_loss(KernelTable& t) {
  t.softmax_xent = ref::softmax_xent;
  t.nll = ref::nll;
  t.pointwise_loss = ref::pointwise_loss;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
