"""``fastmlp.Tensor``: one array (NumPy on the CPU, CuPy on a GPU) plus autograd state.

Names and semantics follow ``torch.Tensor``. The array is the storage: views
(``view``, ``reshape`` where possible, basic indexing, ``state_dict()`` entries)
share it, and in-place ops write through to every view.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np

from . import _dtype
from . import autograd as _ag
from ._device import CPU, as_device, device as _device_cls, same_place
from .backend import for_array, for_device, is_cuda_array

_GradMode = _ag._GradMode
_ndarray = np.ndarray


class Size(tuple):
    """A tensor's shape (``torch.Size``): a tuple that prints as ``fastmlp.Size([2, 3])``."""

    def __repr__(self) -> str:
        return f"fastmlp.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


def _wrap(data, requires_grad: bool = False, grad_fn=None) -> "Tensor":
    """A Tensor around an existing array, without copying or checking (internal fast path)."""
    if type(data) is not _ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # NumPy turns 0-d results into scalars
    t = Tensor.__new__(Tensor)
    t._data = data
    t._requires_grad = requires_grad
    t._grad = None
    t.grad_fn = grad_fn
    t._grad_buf = None
    t._hooks = None
    return t


_ag._wrap = _wrap


def _result(data, node) -> "Tensor":
    """The output tensor of an op: records `node` when it is not None."""
    if type(data) is not _ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # NumPy turns 0-d results into scalars
    t = Tensor.__new__(Tensor)
    t._data = data
    t._requires_grad = node is not None
    t._grad = None
    t.grad_fn = node
    t._grad_buf = None
    t._hooks = None
    return t


def _norm_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def _infer_array(data, dtype=None):
    """NumPy array for `data` with PyTorch's dtype inference (Python floats -> default float dtype)."""
    if isinstance(data, Tensor):
        arr = data._data
        if is_cuda_array(arr):
            arr = arr.get()
        return arr if dtype is None else arr.astype(_dtype.as_dtype(dtype).np)
    if isinstance(data, np.ndarray):
        if dtype is not None:
            return data.astype(_dtype.as_dtype(dtype).np)
        _dtype.from_numpy_dtype(data.dtype)  # raises for unsupported dtypes
        return data
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flatten_seq(data)):
        data = _tensors_to_lists(data)
    if dtype is not None:
        return np.array(data, dtype=_dtype.as_dtype(dtype).np)
    arr = np.array(data)
    if arr.dtype.kind == "f":
        arr = arr.astype(_dtype.get_default_dtype().np)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        pass
    elif arr.dtype == object or arr.dtype.kind in "USO":
        raise TypeError(f"can't make a tensor from {type(data).__name__} holding {arr.dtype} values")
    return arr


def _flatten_seq(seq):
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flatten_seq(x)
        else:
            yield x


def _tensors_to_lists(seq):
    if isinstance(seq, Tensor):
        return seq.tolist()
    if isinstance(seq, (list, tuple)):
        return [_tensors_to_lists(x) for x in seq]
    return seq


class TensorBase:
    """Storage, autograd state, conversions and the Python protocol of a ``Tensor``.

    The ops (arithmetic, reductions, shape, indexing, ...) come from the mixins that
    ``Tensor`` lists below; the op modules test ``isinstance(x, TensorBase)``, since they
    are imported while this module is still defining ``Tensor`` (as ``torch.Tensor``
    derives from ``torch._C.TensorBase``). Every tensor is a ``Tensor``.
    """

    __slots__ = ("_data", "_requires_grad", "_grad", "grad_fn", "_grad_buf", "_hooks", "__weakref__")
    __array_priority__ = 1000  # numpy scalars and arrays defer to Tensor's operators

    def __init__(self, *args, dtype=None, device=None, requires_grad: bool = False):
        """``Tensor(data)`` (float32 by default, as ``torch.Tensor``) or ``Tensor(d0, d1, ...)`` (uninitialised)."""
        dt = _dtype.as_dtype(dtype) if dtype is not None else _dtype.get_default_dtype()
        if len(args) == 1 and not isinstance(args[0], numbers.Integral):
            data = _infer_array(args[0], dt)
        elif all(isinstance(a, numbers.Integral) for a in args):
            data = np.empty(tuple(int(a) for a in args), dtype=dt.np)
        else:
            raise TypeError(f"Tensor() takes data or integer sizes; got {args!r}")
        if device is not None and as_device(device).type != "cpu":
            data = for_device(as_device(device)).from_numpy(data)
        self._data = data
        self._requires_grad = bool(requires_grad)
        self._grad = None
        self.grad_fn = None
        self._grad_buf = None
        self._hooks = None

    # ---- basic properties ---------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None and not value:
            raise RuntimeError("you can only change requires_grad flags of leaf variables; use detach() for a "
                               "tensor without gradient history")
        if value and not self.dtype.is_floating_point:
            raise RuntimeError(f"only tensors of floating point dtype can require gradients; this one is {self.dtype}")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self) -> Optional["Tensor"]:
        """The accumulated gradient (``Tensor.grad``); None until a backward reaches this leaf."""
        return self._grad

    @grad.setter
    def grad(self, value: Optional["Tensor"]) -> None:
        if value is not None:
            _check_grad(self, value)
        self._grad = value

    @grad.deleter
    def grad(self) -> None:
        self._grad = None

    @property
    def _version(self) -> int:
        """In-place modifications of this tensor's storage so far, shared with its views (``Tensor._version``)."""
        return _ag.version(self._data)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: Optional[int] = None, *, axis: Optional[int] = None):
        if axis is not None:
            if dim is not None:
                raise TypeError("size() got multiple values for argument 'dim' (axis is another name for it)")
            dim = axis
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_norm_dim(dim, self._data.ndim)]

    def dim(self) -> int:
        return self._data.ndim

    ndim = property(dim)

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.itemsize

    @property
    def dtype(self) -> _dtype.dtype:
        return _dtype.from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> _device_cls:
        if type(self._data) is _ndarray:
            return CPU
        return _device_cls("cuda", int(self._data.device.id))

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is not _ndarray

    def _xp(self):
        return for_array(self._data).xp

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def contiguous(self) -> "Tensor":
        if self._data.flags.c_contiguous:
            return self
        return _conversion.contiguous(self)

    @property
    def data(self) -> "Tensor":
        """The same storage without autograd history."""
        return _wrap(self._data)

    @data.setter
    def data(self, value: "Tensor") -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be set to a Tensor; got {type(value).__name__}")
        self._data = value._data

    # ---- conversion -------------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to a Python scalar")
        return self._data.reshape(()).item() if type(self._data) is _ndarray else self._data.reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def _host(self) -> np.ndarray:
        return self._data if type(self._data) is _ndarray else self._data.get()

    def numpy(self, force: bool = False) -> np.ndarray:
        """The NumPy array sharing this tensor's memory (CPU tensors without grad, as in PyTorch)."""
        if type(self._data) is not _ndarray:
            if not force:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy: copy it to host memory "
                                "first with Tensor.cpu()")
            return self._data.get()
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on a Tensor that requires grad; use tensor.detach().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self._host()
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        if copy:
            arr = arr.copy()
        return arr

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def detach(self) -> "Tensor":
        return _wrap(self._data)

    def detach_(self) -> "Tensor":
        self.grad_fn = None
        self._requires_grad = False
        return self

    def clone(self, memory_format=None) -> "Tensor":
        return _conversion.clone(self)

    def to(self, *args, **kwargs) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``; returns self when nothing changes."""
        dev, dt, copy = _parse_to_args(args, kwargs)
        out = self
        if dt is not None and dt.np != self._data.dtype:
            out = _conversion.cast(out, dt)
        if dev is not None and not same_place(out.device, dev):
            out = _conversion.to_device(out, dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> "Tensor":
        return self.to(CPU)

    def cuda(self, device=None) -> "Tensor":
        return self.to(_device_cls("cuda", device if isinstance(device, int) else None)
                       if not isinstance(device, (str, _device_cls)) else as_device(device))

    def type(self, dtype=None):
        """``type()``: the type's name, as ``'fastmlp.FloatTensor'``; ``type(t)``: the tensor converted to
        t, a dtype, a legacy type such as ``fastmlp.DoubleTensor`` or its name (``torch.Tensor.type``)."""
        if dtype is None:
            return _ag.legacy_type_name(self._data)
        if isinstance(dtype, _LegacyTensorType):
            return self.to(dtype.dtype)
        if isinstance(dtype, str) and dtype.rsplit(".", 1)[-1] in _LEGACY_TYPES:
            return self.to(_LEGACY_TYPES[dtype.rsplit(".", 1)[-1]].dtype)
        return self.to(_dtype.as_dtype(dtype))

    def _cast(self, dt: _dtype.dtype) -> "Tensor":
        """``to(dt)`` without parsing arguments (what ``float()``, ``long()``, ... are)."""
        if self._data.dtype == dt.np:
            return self
        return _conversion.cast(self, dt)

    def float(self) -> "Tensor":
        return self._cast(_dtype.float32)

    def double(self) -> "Tensor":
        return self._cast(_dtype.float64)

    def half(self) -> "Tensor":
        return self._cast(_dtype.float16)

    def bfloat16(self) -> "Tensor":
        """Values rounded to bfloat16, nearest even (``torch.Tensor.bfloat16``); CPU tensors only.
        A bfloat16 tensor is storage: convert it back with ``.float()`` to compute on it."""
        return self._cast(_dtype.bfloat16)

    def long(self) -> "Tensor":
        return self._cast(_dtype.int64)

    def int(self) -> "Tensor":
        return self._cast(_dtype.int32)

    def bool(self) -> "Tensor":
        return self._cast(_dtype.bool_)

    def byte(self) -> "Tensor":
        return self._cast(_dtype.uint8)

    # ---- autograd ---------------------------------------------------------------
    def backward(self, gradient=None, retain_graph: Optional[bool] = None, create_graph: bool = False,
                 inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``torch.Tensor.backward``)."""
        if gradient is None and inputs is None and not create_graph:
            _ag.backward_unit(self, bool(retain_graph))
            return
        _ag.backward([self], None if gradient is None else [gradient], retain_graph, create_graph, inputs)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a replacement."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            if self.grad_fn.hooks is None:
                self.grad_fn.hooks = []
            self.grad_fn.hooks.append(hook)
            hooks = self.grad_fn.hooks
        else:
            if self._hooks is None:
                self._hooks = []
            self._hooks.append(hook)
            hooks = self._hooks
        return _RemovableHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor during backward."""
        if self.grad_fn is None:
            return
        import weakref

        self.grad_fn.retained = weakref.ref(self)

    # ---- printing ------------------------------------------------------------------
    def __repr__(self) -> str:
        return _format(self)

    def __str__(self) -> str:
        return _format(self)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0 and spec:
            return format(self.item(), spec)
        return str(self)

    # ---- Python protocol -------------------------------------------------------------
    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self._data.shape[0]):
            yield self[i]

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} values is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__  # identity, as torch.Tensor (C-level: tensors key optimizer state)

    def __reduce_ex__(self, protocol):
        raise TypeError("fastmlp tensors are not pickled; save them with fastmlp.save(obj, path)")

    def __deepcopy__(self, memo):
        out = _wrap(self._data.copy(), self._requires_grad)
        if self._grad is not None:
            out._grad = _wrap(self._grad._data.copy())
        memo[id(self)] = out
        return out


# The op modules import TensorBase, _wrap and _result from here, so they come after them.
from .ops import conversion as _conversion  # noqa: E402
from .ops.activations import ActivationMethods  # noqa: E402
from .ops.arithmetic import ArithmeticMethods  # noqa: E402
from .ops.comparison import ComparisonMethods  # noqa: E402
from .ops.factories import FactoryMethods  # noqa: E402
from .ops.indexing import IndexingMethods  # noqa: E402
from .ops.inplace import InplaceMethods  # noqa: E402
from .ops.reductions import ReductionMethods  # noqa: E402
from .ops.shape import ShapeMethods  # noqa: E402


class Tensor(TensorBase, ArithmeticMethods, ComparisonMethods, ReductionMethods, ShapeMethods, IndexingMethods,
             InplaceMethods, ActivationMethods, FactoryMethods):
    """A multi-dimensional array with autograd (``torch.Tensor``).

    Where each method is defined: storage, autograd, conversions (``to``, ``float``,
    ``numpy``, ``item``) and printing in ``TensorBase`` above; ``+ - * / @ exp clamp ...``
    in ``fastmlp/ops/arithmetic.py``; ``== < & ~ isnan ...`` in ``ops/comparison.py``;
    ``sum mean max argmax sort ...`` in ``ops/reductions.py``; ``view reshape permute
    expand ...`` in ``ops/shape.py``; ``t[idx]``, ``t[idx] = v`` in ``ops/indexing.py``;
    ``add_ += zero_ copy_ ...`` in ``ops/inplace.py``; ``relu softmax ...`` in
    ``ops/activations.py``; ``new_zeros ...`` in ``ops/factories.py``.
    """

    __slots__ = ()


_ag._Tensor = Tensor


def _check_grad(t: Tensor, g) -> None:
    """The checks of PyTorch's ``.grad`` setter: a tensor of the same dtype, device and size."""
    if not isinstance(g, Tensor):
        raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of type {type(g).__name__}")
    if g is t:
        raise RuntimeError("can't assign Variable as its own grad")
    gd, d = g._data, t._data
    if gd.dtype != d.dtype:
        raise RuntimeError(f"attempting to assign a gradient with dtype '{_dtype.from_numpy_dtype(gd.dtype).name}' "
                           f"to a tensor with dtype '{_dtype.from_numpy_dtype(d.dtype).name}'. Please ensure that the "
                           "gradient and the tensor have the same dtype")
    if type(gd) is not type(d) or (type(d) is not _ndarray and gd.device.id != d.device.id):
        raise RuntimeError(f"attempting to assign a gradient located on device '{g.device}' to a tensor located on "
                           f"device '{t.device}'. Please ensure that the gradient and the tensor are on the same "
                           "device")
    if gd.shape != d.shape:
        raise RuntimeError(f"attempting to assign a gradient of size '{list(gd.shape)}' to a tensor of size "
                           f"'{list(d.shape)}'. Please ensure that the gradient and the tensor are the same size")


class _LegacyTensorType(type):
    """The type of ``fastmlp.FloatTensor`` and the other legacy tensor types (``torch.tensortype``).

    Calling one makes a CPU tensor of its dtype; ``isinstance(t, fastmlp.FloatTensor)``
    tells whether t is a float32 CPU tensor. They are not subclasses of Tensor (nor are
    PyTorch's): every tensor stays a plain Tensor.
    """

    dtype: _dtype.dtype

    def __call__(cls, *args, device=None) -> Tensor:
        if device is not None and as_device(device).type != "cpu":
            raise RuntimeError(f"legacy constructor expects device type: cpu but device type: "
                               f"{as_device(device).type} was passed")
        dt = cls.dtype
        if not args:
            return _wrap(np.empty((0,), dtype=dt.np))
        if len(args) == 1:
            data = args[0]
            if isinstance(data, Tensor):
                if data._data.dtype != dt.np or type(data._data) is not _ndarray:
                    raise TypeError(f"expected {dt} CPU tensor (got {data.dtype} on {data.device})")
                return _wrap(data._data)
            if isinstance(data, Size):
                return _wrap(np.empty(tuple(data), dtype=dt.np))
            if not isinstance(data, numbers.Integral):
                if isinstance(data, numbers.Number):
                    raise TypeError(f"new(): data must be a sequence (got {type(data).__name__})")
                return _wrap(np.array(_infer_array(data, dt), copy=True))
        if not all(isinstance(a, numbers.Integral) for a in args):
            raise TypeError(f"{cls.__name__}() takes data or integer sizes; got {args!r}")
        return _wrap(np.empty(tuple(int(a) for a in args), dtype=dt.np))

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and type(obj._data) is _ndarray and obj._data.dtype == cls.dtype.np

    def __repr__(cls) -> str:
        return f"<class 'fastmlp.{cls.__name__}'>"


def _legacy_type(name: str, dt: _dtype.dtype) -> _LegacyTensorType:
    return _LegacyTensorType(name, (), {"dtype": dt, "__doc__": f"{dt} CPU tensors (``torch.{name}``).",
                                        "__module__": "fastmlp"})


FloatTensor = _legacy_type("FloatTensor", _dtype.float32)
DoubleTensor = _legacy_type("DoubleTensor", _dtype.float64)
HalfTensor = _legacy_type("HalfTensor", _dtype.float16)
LongTensor = _legacy_type("LongTensor", _dtype.int64)
IntTensor = _legacy_type("IntTensor", _dtype.int32)
ShortTensor = _legacy_type("ShortTensor", _dtype.int16)
CharTensor = _legacy_type("CharTensor", _dtype.int8)
ByteTensor = _legacy_type("ByteTensor", _dtype.uint8)
BoolTensor = _legacy_type("BoolTensor", _dtype.bool_)
_LEGACY_TYPES = {t.__name__: t for t in (FloatTensor, DoubleTensor, HalfTensor, LongTensor, IntTensor, ShortTensor,
                                         CharTensor, ByteTensor, BoolTensor)}


class _RemovableHandle:
    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _parse_to_args(args, kwargs):
    dev = kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dt = a.device, a.dtype
        elif isinstance(a, (_dtype.dtype, type)) or (isinstance(a, str) and a in _dtype._NAMES):
            dt = a
        elif isinstance(a, (str, _device_cls, int)):
            dev = a
        elif isinstance(a, bool):
            pass
        else:
            raise TypeError(f"to() received an invalid argument {a!r}")
    return (as_device(dev) if dev is not None else None), (_dtype.as_dtype(dt) if dt is not None else None), copy


def _format(t: Tensor) -> str:
    arr = t._host()
    bf16 = arr.dtype == _dtype.bfloat16.np
    if bf16:  # shown as its float32 values
        from . import _bf16

        arr = _bf16.from_bf16(arr, np.float32)
    kind = arr.dtype.kind
    suffix = []
    if kind == "f":
        finite = arr[np.isfinite(arr)] if arr.size else arr
        integral = finite.size == 0 or bool(np.all(finite == np.round(finite)))
        big = finite.size and (np.abs(finite).max() >= 1e8 or (np.abs(finite[finite != 0]).min() < 1e-4
                                                              if np.any(finite != 0) else False))
        opts = dict(precision=4, floatmode="fixed", suppress_small=False)
        if integral and not big:
            body = np.array2string(arr, separator=", ", prefix="tensor(", precision=0, floatmode="fixed")
        elif big:
            body = np.array2string(arr, separator=", ", prefix="tensor(",
                                   formatter={"float_kind": lambda v: f"{v:.4e}"})
        else:
            body = np.array2string(arr, separator=", ", prefix="tensor(", **opts)
        if bf16:
            suffix.append(f"dtype={_dtype.bfloat16}")
        elif arr.dtype != _dtype.get_default_dtype().np:
            suffix.append(f"dtype={_dtype.from_numpy_dtype(arr.dtype)}")
    else:
        body = np.array2string(arr, separator=", ", prefix="tensor(")
        if arr.dtype != np.int64 and arr.dtype != np.bool_:
            suffix.append(f"dtype={_dtype.from_numpy_dtype(arr.dtype)}")
    if arr.size == 0:
        body = "[]"
        suffix.insert(0, f"size={tuple(arr.shape)}")
    if t.device.type != "cpu":
        suffix.insert(0, f"device='{t.device}'")
    if t.grad_fn is not None:
        suffix.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t._requires_grad:
        suffix.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + s for s in suffix) + ")"
