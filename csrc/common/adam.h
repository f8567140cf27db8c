// The per-call constants of an Adam / AdamW step, shared by every implementation.
//
// PyTorch's update  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)  is computed as
//   p -= step_size · m / (sqrt(v) + eps_hat)
// with step_size = lr·sqrt(1-β2^t)/(1-β1^t) and eps_hat = eps·sqrt(1-β2^t): the same
// quantity (both sides multiplied by sqrt(1-β2^t)), with one division per element
// instead of two. Division and square root bound the speed of the CPU kernels, so
// this takes about a third off an Adam step. The constants are formed in double and
// rounded once; the results differ from PyTorch's order of operations by an ulp or so.
#pragma once

#include <cmath>
#include <cstdint>

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

}  // namespace fastmlp
