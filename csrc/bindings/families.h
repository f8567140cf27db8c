// One registration function per kernel family (bind_<family>.cpp).
#pragma once

#include <pybind11/pybind11.h>

#include "common/activation.h"

namespace fastmlp::bind {

void bind_gemm(pybind11::module_& m);
void bind_activation(pybind11::module_& m);
void bind_loss(pybind11::module_& m);
void bind_reduce(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_mlp(pybind11::module_& m);
void bind_join(pybind11::module_& m);
void bind_bf16(pybind11::module_& m);

// Activation code from Python (an int, as fastmlp.nn.functional passes it), checked.
Act act_from_int(int act, const char* fn);

}  // namespace fastmlp::bind
