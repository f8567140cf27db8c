// Activation functions: one enum and the scalar forward/backward math, shared by
// the CPU kernels (inside vectorized loops), the GEMM epilogue and the CUDA kernels.
//
//   identity  y = x
//   relu      y = max(x, 0), NaN kept               dy/dx = [not y <= 0]   (needs y)
//   leaky     y = x if x > 0 else a·x               dy/dx = 1 or a          (needs x)
//   sigmoid   y = 1 / (1 + e^-x)                    dy/dx = y·(1 - y)       (needs y)
//   tanh      y = tanh x                            dy/dx = 1 - y²          (needs y)
//   gelu      y = x·Φ(x) = ½·x·erfc(-x/√2)          dy/dx = Φ(x) + x·φ(x)   (needs x)
#pragma once

#include "mathfn.h"

namespace fastmlp {

enum class Act : int { Identity = 0, ReLU = 1, LeakyReLU = 2, Sigmoid = 3, Tanh = 4, GELU = 5 };
constexpr int kNumActs = 6;

// Whether the backward of `act` reads the activation's input x (else its output y).
FASTMLP_HD bool act_backward_needs_input(Act act) { return act == Act::LeakyReLU || act == Act::GELU; }

FASTMLP_HD float act_forward(Act act, float x, float param) {
  switch (act) {
    case Act::ReLU: return x < 0.0f ? 0.0f : x;  // NaN stays NaN (and -0 stays -0), as torch.relu
    case Act::LeakyReLU: return x > 0.0f ? x : x * param;
    case Act::Sigmoid: return fm_sigmoid(x);
    case Act::Tanh: return fm_tanh(x);
    case Act::GELU: return 0.5f * x * fm_erfc(-0.70710678118654752f * x);
    case Act::Identity: default: return x;
  }
}

// dx = dy · act'(·), where `saved` is x or y as act_backward_needs_input says.
FASTMLP_HD float act_backward(Act act, float dy, float saved, float param) {
  switch (act) {
    case Act::ReLU: return saved <= 0.0f ? 0.0f : dy;  // a NaN output passes dy on, as in torch
    case Act::LeakyReLU: return saved > 0.0f ? dy : dy * param;
    case Act::Sigmoid: return dy * saved * (1.0f - saved);
    case Act::Tanh: return dy * (1.0f - saved * saved);
    case Act::GELU: {
      const float x = saved;
      const float cdf = 0.5f * fm_erfc(-0.70710678118654752f * x);
      const float pdf = 0.39894228040143268f * fm_exp(-0.5f * x * x);
      return dy * (cdf + x * pdf);
    }
    case Act::Identity: default: return dy;
  }
}

}  // namespace fastmlp
