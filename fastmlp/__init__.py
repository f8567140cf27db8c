"""fastmlp: train multilayer perceptrons from Python on hand-written C++/CUDA kernels.

The API follows PyTorch's names and semantics (``fastmlp.nn``, ``fastmlp.optim``,
``fastmlp.utils.data``), so a PyTorch training script runs with ``torch`` replaced
by ``fastmlp``.
"""
from __future__ import annotations

try:
    from . import _C
except ImportError as _err:  # pragma: no cover - depends on how the package was installed
    import os as _os

    if "_C" not in str(_err):
        raise
    raise ImportError(
        f"fastmlp's compiled extension (_C) is missing from {_os.path.dirname(__file__)}. "
        "Install the package with `pip install .`, and run Python outside the source tree, or build "
        "in place with `cmake -S . -B build/dev -DFASTMLP_INPLACE=ON && cmake --build build/dev`."
    ) from _err

from .tensor import Size, Tensor  # noqa: I001  (first: the other modules build on it)
from .tensor import (BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor, HalfTensor, IntTensor, LongTensor,
                     ShortTensor)
from . import ops as _ops
from ._device import device
from ._autocast import autocast, get_autocast_dtype, is_autocast_enabled
from ._dtype import (bool_ as bool, bfloat16, dtype, float16, float32, float64, get_default_dtype, int8, int16, int32, int64,
                     set_default_dtype, uint8)
from ._info import info
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, normal, ones,
                       ones_like, rand, rand_like, randint, randn, randn_like, randperm, scalar_tensor, tensor, zeros,
                       zeros_like)
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .serialization import load, save

from . import autograd, backends, cuda, nn, optim  # noqa: E402  (after the core names they use)
from . import utils, datasets, transforms, train  # noqa: E402  (data loading and training loops)
from . import onnx  # noqa: E402  (imports the onnx package only when export() runs)

__version__ = _C.__version__

float = float32  # noqa: A001 - PyTorch's aliases
double = float64
half = float16
long = int64
int = int32  # noqa: A001
short = int16

add = _ops.add
sub = _ops.sub
subtract = _ops.sub
mul = _ops.mul
multiply = _ops.mul
div = _ops.div
divide = _ops.div
pow = _ops.pow
matmul = _ops.matmul
mm = _ops.matmul
neg = _ops.neg
exp = _ops.exp
log = _ops.log
sqrt = _ops.sqrt
abs = _ops.abs
clamp = _ops.clamp
clamp_min = _ops.clamp_min
clamp_max = _ops.clamp_max
clip = _ops.clamp
sigmoid = _ops.sigmoid
tanh = _ops.tanh
relu = _ops.relu
sum = _ops.sum
mean = _ops.mean
var = _ops.var
std = _ops.std
max = _ops.max
min = _ops.min
maximum = _ops.maximum
minimum = _ops.minimum
argmax = _ops.argmax
argmin = _ops.argmin
eq = _ops.eq
ne = _ops.ne
lt = _ops.lt
le = _ops.le
gt = _ops.gt
ge = _ops.ge
equal = _ops.equal
allclose = _ops.allclose
reshape = _ops.reshape
flatten = _ops.flatten
squeeze = _ops.squeeze
unsqueeze = _ops.unsqueeze
transpose = _ops.transpose
permute = _ops.permute
t = _ops.t
cat = _ops.cat
concat = _ops.cat
stack = _ops.stack
where = _ops.where
gather = _ops.gather
topk = _ops.topk
sort = _ops.sort
unique = _ops.unique
nonzero = _ops.nonzero
clone = _ops.clone


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    return nn.functional.softmax(input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    return nn.functional.log_softmax(input, dim, dtype=dtype)


def is_tensor(obj) -> "bool":
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> "int":
    return input.numel()


def get_num_threads() -> "int":
    """Number of CPU threads the kernels use (``torch.get_num_threads``)."""
    return _C.get_num_threads()


def set_num_threads(n) -> None:
    """Set the number of CPU threads the kernels use (``torch.set_num_threads``)."""
    _C.set_num_threads(_builtins.int(n))


import builtins as _builtins  # noqa: E402
