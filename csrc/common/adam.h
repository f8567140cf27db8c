// The per-call constants of an Adam / AdamW step, shared by every implementation.
//
// PyTorch's update  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)  is computed as
//   p -= step_size · m / (sqrt(v) + eps_hat)
// with step_size = lr·sqrt(1-β2^t)/(1-β1^t) and eps_hat = eps·sqrt(1-β2^t): the same
// quantity (both sides multiplied by sqrt(1-β2^t)), with one division per element
// instead of two. Division and square root bound the speed of the CPU kernels, so
// this takes about a third off an Adam step. The constants are formed in double and
// rounded once; the results differ from PyTorch's order of operations by an ulp or so.
//
// On x86-64 the CPU kernels (and the reference) run with denormals flushed to zero:
// see FlushDenormals.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FASTMLP_HAVE_MXCSR 1
#endif

namespace fastmlp {

struct AdamScalars {
  float step_size;  // lr·sqrt(1-β2^t)/(1-β1^t)
  float eps_hat;    // eps·sqrt(1-β2^t)
};

inline AdamScalars adam_scalars(float lr, float beta1, float beta2, float eps, std::int64_t step) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), t);
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(static_cast<double>(beta2), t));
  return {static_cast<float>(static_cast<double>(lr) * bc2_sqrt / bc1),
          static_cast<float>(static_cast<double>(eps) * bc2_sqrt)};
}

// While alive, this thread's float arithmetic treats denormal inputs as zero and
// flushes denormal results to zero (MXCSR DAZ and FTZ on x86-64; nothing elsewhere);
// the previous mode comes back on destruction.
//
// Why: Adam's first moment m decays by β1 each step where the gradient is zero (the
// weights of MNIST pixels that are rarely inked, ReLU units that are off), so after a
// few hundred steps a fifth of the m of a first layer lies below FLT_MIN, and vector
// operations on denormals are slow: on the seed-001 network they doubled the time
// of the optimizer step (26 -> 13 us with the flush). Flushing changes only values
// below 1.2e-38 in magnitude: a state value that small becomes 0, and its effect on
// the parameter (m·step_size/denominator, far below the parameter's own rounding
// unless the parameter is itself that small) is nil. It is per thread, so each
// OpenMP thread of a kernel sets its own.
class FlushDenormals {
 public:
#ifdef FASTMLP_HAVE_MXCSR
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFtz = 0x8000u, kDaz = 0x0040u;
  unsigned saved_;
#else
  FlushDenormals() {}
#endif
 public:
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace fastmlp
