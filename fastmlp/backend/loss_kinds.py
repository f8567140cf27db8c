"""The kinds of pointwise loss that the native ``pointwise_loss`` kernels compute.

The values are those of the C++ ``PointwiseLoss`` enum (``csrc/cpu``, ``csrc/cuda/kernels.cuh``)
that the bindings receive as an int; an ``IntEnum`` crosses pybind11 as that int.
"""
from __future__ import annotations

import enum


class PointwiseLoss(enum.IntEnum):
    """Which elementwise loss ``backend.pointwise_loss`` computes (``torch.nn.functional`` name in the comment)."""

    MSE = 0  # mse_loss
    L1 = 1  # l1_loss
    BCE = 2  # binary_cross_entropy (of probabilities)
    BCE_WITH_LOGITS = 3  # binary_cross_entropy_with_logits


# The autograd node name PyTorch gives each loss's gradient.
BACKWARD_NAMES = {PointwiseLoss.MSE: "MseLossBackward0", PointwiseLoss.L1: "L1LossBackward0",
                  PointwiseLoss.BCE: "BinaryCrossEntropyBackward0",
                  PointwiseLoss.BCE_WITH_LOGITS: "BinaryCrossEntropyWithLogitsBackward0"}
