"""Tensor ops by kind, each module with the ``Tensor`` methods it makes as a mixin class.

============================  =====================================================  ======================
module                        ops                                                    Tensor mixin
============================  =====================================================  ======================
``arithmetic``                ``+ - * / // % ** @``, exp, log, sqrt, abs, clamp, ...  ``ArithmeticMethods``
``comparison``                ``== != < <= > >= & | ^ ~``, equal, allclose, isnan    ``ComparisonMethods``
``reductions``                sum, mean, var, std, max, min, argmax, all, sort, ...  ``ReductionMethods``
``shape``                     view, reshape, flatten, permute, expand, cat, stack    ``ShapeMethods``
``indexing``                  ``t[i]``, ``t[i] = v``, gather, where, nonzero         ``IndexingMethods``
``inplace``                   add_, ``+=``, exp_, clamp_, zero_, fill_, copy_, ...   ``InplaceMethods``
``activations``               sigmoid, tanh, relu, softmax, log_softmax             ``ActivationMethods``
``factories``                 new_zeros, new_ones, new_full, new_tensor             ``FactoryMethods``
``conversion``                clone, contiguous, dtype casts, device moves           (``TensorBase.to``)
``common``                    type promotion, broadcasting, gradient helpers
============================  =====================================================  ======================

Each op computes its result with the array library of its device and, when a
gradient is needed, records one Node whose ``backward`` sits right above the op. The
hot MLP ops (Linear, activations, softmax, losses, dropout) live in
``fastmlp.nn.functional`` and call the native kernels.
"""
from .activations import relu, sigmoid, tanh
from .arithmetic import (abs, add, clamp, clamp_max, clamp_min, div, exp, log, matmul, maximum, minimum, mul, neg, pow,
                         sqrt, sub)
from .common import unbroadcast
from .comparison import allclose, eq, equal, ge, gt, le, lt, ne
from .conversion import cast, clone, contiguous, to_device
from .indexing import gather, getitem, nonzero, setitem, where
from .reductions import argmax, argmin, max, mean, min, sort, std, sum, topk, unique, var
from .shape import cat, expand, flatten, permute, reshape, squeeze, stack, t, transpose, unsqueeze, view

__all__ = ["abs", "add", "allclose", "argmax", "argmin", "cast", "cat", "clamp", "clamp_max", "clamp_min", "clone",
           "contiguous", "div", "eq", "equal", "exp", "expand", "flatten", "gather", "ge", "getitem", "gt", "le",
           "log", "lt", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "ne", "neg", "nonzero",
           "permute", "pow", "relu", "reshape", "setitem", "sigmoid", "sort", "sqrt", "squeeze", "stack", "std", "sub", "sum",
           "t", "tanh", "to_device", "topk", "transpose", "unbroadcast", "unique", "unsqueeze", "var", "view",
           "where"]
