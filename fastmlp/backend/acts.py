"""Activation codes shared with the native kernels (csrc/common/activation.h)."""
IDENTITY = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
TANH = 4
GELU = 5

NAMES = {IDENTITY: "identity", RELU: "relu", LEAKY_RELU: "leaky_relu", SIGMOID: "sigmoid", TANH: "tanh",
         GELU: "gelu"}


def backward_needs_input(act: int) -> bool:
    """Whether the activation's backward reads its input (else its output)."""
    return act == LEAKY_RELU or act == GELU
