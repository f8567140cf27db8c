"""``fastmlp.nn``: modules, layers, losses, initialisation (``torch.nn``)."""
from . import functional, init, parallel
from .container import ModuleList, Sequential
from .layers import (GELU, BatchNorm1d, Dropout, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid,
                     Softmax, Tanh, Unflatten)
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module, Parameter
from .plan import explain

__all__ = ["Module", "Parameter", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax",
           "Dropout", "BatchNorm1d", "Flatten", "Unflatten", "Identity", "Sequential", "ModuleList",
           "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "functional", "init", "explain"]
