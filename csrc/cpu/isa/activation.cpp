// Element-wise activations, forward and backward (math in common/activation.h).
// The activation is a template parameter so each loop is specialised and
// vectorized; OpenMP splits long arrays into contiguous chunks.
#include "cpu/isa/isa.h"

namespace fastmlp::cpu::FASTMLP_ISA {
namespace {

// Work per element, in units of a ReLU, to decide when threads pay off.
constexpr index_t cost_of(Act act) {
  return act == Act::GELU ? 24 : (act == Act::Sigmoid || act == Act::Tanh) ? 12 : 1;
}

// One thread runs the loop without opening a parallel region (a region of one thread
// still costs about half a microsecond, several times a short loop's own time).
template <Act A>
void forward_loop(float* y, const float* x, index_t n, float param) {
  const int nt = threads_for(n * cost_of(A));
  if (nt <= 1) {
#pragma omp simd
    for (index_t i = 0; i < n; ++i) y[i] = act_forward(A, x[i], param);
    return;
  }
#pragma omp parallel for simd schedule(static) num_threads(nt)
  for (index_t i = 0; i < n; ++i) y[i] = act_forward(A, x[i], param);
}

template <Act A>
void backward_loop(float* dx, const float* dy, const float* saved, index_t n, float param,
                   bool accumulate) {
  const int nt = threads_for(n * cost_of(A));
  if (nt <= 1) {
    if (accumulate) {
#pragma omp simd
      for (index_t i = 0; i < n; ++i) dx[i] += act_backward(A, dy[i], saved[i], param);
    } else {
#pragma omp simd
      for (index_t i = 0; i < n; ++i) dx[i] = act_backward(A, dy[i], saved[i], param);
    }
    return;
  }
  if (accumulate) {
#pragma omp parallel for simd schedule(static) num_threads(nt)
    for (index_t i = 0; i < n; ++i) dx[i] += act_backward(A, dy[i], saved[i], param);
  } else {
#pragma omp parallel for simd schedule(static) num_threads(nt)
    for (index_t i = 0; i < n; ++i) dx[i] = act_backward(A, dy[i], saved[i], param);
  }
}

// act_forward: y = act(x)
void act_forward_kernel(float* y, const float* x, index_t n, Act act, float param) {
  switch (act) {
    case Act::Identity:
      if (y != x) forward_loop<Act::Identity>(y, x, n, param);
      break;
    case Act::ReLU: forward_loop<Act::ReLU>(y, x, n, param); break;
    case Act::LeakyReLU: forward_loop<Act::LeakyReLU>(y, x, n, param); break;
    case Act::Sigmoid: forward_loop<Act::Sigmoid>(y, x, n, param); break;
    case Act::Tanh: forward_loop<Act::Tanh>(y, x, n, param); break;
    case Act::GELU: forward_loop<Act::GELU>(y, x, n, param); break;
  }
}

// act_backward: dx (+)= dy · act'(saved)
void act_backward_kernel(float* dx, const float* dy, const float* saved, index_t n, Act act,
                         float param, bool accumulate) {
  switch (act) {
    case Act::Identity: backward_loop<Act::Identity>(dx, dy, saved, n, param, accumulate); break;
    case Act::ReLU: backward_loop<Act::ReLU>(dx, dy, saved, n, param, accumulate); break;
    case Act::LeakyReLU: backward_loop<Act::LeakyReLU>(dx, dy, saved, n, param, accumulate); break;
    case Act::Sigmoid: backward_loop<Act::Sigmoid>(dx, dy, saved, n, param, accumulate); break;
    case Act::Tanh: backward_loop<Act::Tanh>(dx, dy, saved, n, param, accumulate); break;
    case Act::GELU: backward_loop<Act::GELU>(dx, dy, saved, n, param, accumulate); break;
  }
}

}  // namespace

void fill_activation(KernelTable& t) {
  t.act_forward = act_forward_kernel;
  t.act_backward = act_backward_kernel;
}

}  // namespace fastmlp::cpu::FASTMLP_ISA
