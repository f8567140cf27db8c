"""``fastmlp.nn.Module`` and ``Parameter`` (``torch.nn.Module``, ``torch.nn.Parameter``)."""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .. import _dtype
from .. import _generation
from .._device import CPU, device as _device_cls, same_place
from ..autograd import no_grad
from ..tensor import Size, Tensor, _parse_to_args


class Parameter(Tensor):
    """A tensor that a Module registers as trainable when assigned as an attribute."""

    __slots__ = ()

    def __new__(cls, data: Optional[Tensor] = None, requires_grad: bool = True):
        if data is None:
            arr = np.empty((0,), dtype=_dtype.get_default_dtype().np)
        elif isinstance(data, Tensor):
            arr = data._data
        else:
            raise TypeError(f"Parameter expects a Tensor; got {type(data).__name__}")
        p = Tensor.__new__(cls)
        p._data = arr
        p._requires_grad = bool(requires_grad)
        p.grad = None
        p.grad_fn = None
        p._grad_buf = None
        p._hooks = None
        return p

    def __init__(self, data: Optional[Tensor] = None, requires_grad: bool = True):
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        out = Parameter(Tensor(self._data.copy(), dtype=_dtype.from_numpy_dtype(self._data.dtype)), self._requires_grad)
        if self.grad is not None:
            out.grad = Tensor(self.grad._data.copy(), dtype=_dtype.from_numpy_dtype(self.grad._data.dtype))
        memo[id(self)] = out
        return out


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _RemovableHandle:
    def __init__(self, store: dict, key: int):
        self._store, self._key = store, key

    def remove(self) -> None:
        self._store.pop(self._key, None)
        _generation.advance()


_hook_ids = [0]

# Bumped whenever any module registers or removes a parameter, buffer or child, so
# that parameters() can serve a cached list (it runs in every zero_grad()).
_structure_version = [0]


def _registered(module: "Module", name: str) -> None:
    """Bookkeeping of (re)registering `name` as a parameter or child of `module`: replacing or
    removing one changes what a native program built over the model computes (advance the model
    generation); a new name changes only `module`'s own structure (its native route, if any, goes)."""
    d = module.__dict__
    if name in d.get("_parameters", ()) or name in d.get("_modules", ()):
        _generation.advance()
    else:
        d.pop("_route", None)


class Module:
    """Base class of every layer and model (``torch.nn.Module``).

    Assigning a Parameter, a Module or a buffer as an attribute registers it;
    ``parameters()``, ``state_dict()``, ``to()``, ``train()``/``eval()`` and
    ``zero_grad()`` then walk the registered tree.
    """

    training: bool
    # Whether the native program reads this module's attributes (a Dropout's p, an activation's
    # parameter): setting one to a new value advances the model generation (fastmlp._generation).
    _affects_plan = False

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()

    # ---- registration -----------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, (Parameter, Module)) or name in d.get("_parameters", ()) or \
                name in d.get("_modules", ()) or name in d.get("_buffers", ()):
            _structure_version[0] += 1
            _registered(self, name)
        elif self._affects_plan and d.get(name, value) is not value:
            _generation.advance()
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign attributes before {type(self).__name__}.__init__() calls "
                                 "super().__init__()")
        params, modules, buffers = d["_parameters"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(fastmlp.nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(fastmlp.nn.Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        _structure_version[0] += 1
        _registered(self, name)
        for store in ("_parameters", "_modules", "_buffers"):
            self.__dict__[store].pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        _structure_version[0] += 1
        _registered(self, name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(fastmlp.nn.Parameter or None required)")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        _structure_version[0] += 1
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' (Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        _structure_version[0] += 1
        _registered(self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f"module name must be a non-empty string without '.'; got {name!r}")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        mod = self
        if target == "":
            return mod
        for item in target.split("."):
            if item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    # ---- forward ------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required \"forward\" function")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                out = hook(self, args)
                if out is not None:
                    args = out if isinstance(out, tuple) else (out,)
        result = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                out = hook(self, args, result)
                if out is not None:
                    result = out
        return result

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        _hook_ids[0] += 1
        _generation.advance()
        self._forward_hooks[_hook_ids[0]] = hook
        return _RemovableHandle(self._forward_hooks, _hook_ids[0])

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        _hook_ids[0] += 1
        _generation.advance()
        self._forward_pre_hooks[_hook_ids[0]] = hook
        return _RemovableHandle(self._forward_pre_hooks, _hook_ids[0])

    def _has_hooks(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)

    # ---- traversal -------------------------------------------------------------------------
    def named_modules(self, memo: Optional[set] = None, prefix: str = "", remove_duplicate: bool = True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, v in mod.__dict__[store].items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mod_prefix + ("." if mod_prefix else "") + name, v

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        if not recurse:
            return (p for _, p in self.named_parameters(recurse=False))
        cache = self.__dict__.get("_param_cache")
        if cache is None or cache[0] != _structure_version[0]:
            cache = (_structure_version[0], [p for _, p in self.named_parameters()])
            self.__dict__["_param_cache"] = cache
        return iter(cache[1])

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            if m.__dict__["training"] != mode:
                m.__dict__["training"] = mode
                _generation.advance()
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset parameter gradients: to None (default, as PyTorch 2) or to zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad = p.grad.detach()
                p.grad._data[...] = 0

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False) -> "OrderedDict":
        """Parameters and persistent buffers by dotted name; the tensors share memory with the module."""
        if args:
            destination = args[0]
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy values from `state_dict` into this module's parameters and buffers (in place).

        With strict=True, missing or unexpected keys raise RuntimeError listing them;
        a shape mismatch always raises, naming the key and both shapes.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            if not isinstance(src, Tensor):
                try:
                    from ..creation import as_tensor

                    src = as_tensor(src)
                except TypeError:
                    errors.append(f'While copying the parameter named "{k}", expected a Tensor; got '
                                  f"{type(src).__name__}.")
                    continue
            if tuple(src.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {k}: copying a param with shape {Size(src.shape)} from checkpoint, "
                              f"the shape in current model is {Size(target.shape)}.")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        with no_grad():
            for k, target in own.items():
                if k in state_dict:
                    src = state_dict[k]
                    if not isinstance(src, Tensor):
                        from ..creation import as_tensor

                        src = as_tensor(src)
                    target.copy_(src.to(dtype=target.dtype))
        return _IncompatibleKeys(missing, unexpected)

    # ---- devices and dtypes ------------------------------------------------------------------------
    def _apply_to_tensors(self, fn: Callable) -> "Module":
        """Replace every parameter's and buffer's array by fn(array), keeping the Parameter objects."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                moved = fn(p._data, True)
                if moved is not p._data:  # else it stays a view of the optimizer's flat buffer
                    p._data = moved
                    p._grad_buf = None
                if p.grad is not None:
                    p.grad._data = fn(p.grad._data, True)
            for name, b in m._buffers.items():
                if b is not None:
                    b._data = fn(b._data, False)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """Move and/or cast parameters and buffers in place: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``.

        Arrays already on the device (``"cuda"`` being the current CUDA device) with the
        dtype are left as they are, so parameters stay views of an optimizer's flat buffers.
        """
        dev, dt, _ = _parse_to_args(args, kwargs)
        if dt is not None and not dt.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dt}")
        from ..backend import for_device

        def convert(arr, is_param):
            if dt is not None and arr.dtype.kind == "f" and arr.dtype != dt.np:
                arr = arr.astype(dt.np)
            if dev is not None:
                here = CPU if type(arr) is np.ndarray else _device_cls("cuda", arr.device.id)
                if not same_place(here, dev):  # an array already there is kept: the optimizer may own it
                    arr = arr.get() if dev.type == "cpu" else for_device(dev).from_numpy(arr, dev)
            return arr

        return self._apply_to_tensors(convert)

    def cuda(self, device=None) -> "Module":
        return self.to("cuda" if device is None else (f"cuda:{device}" if isinstance(device, int) else device))

    def cpu(self) -> "Module":
        return self.to("cpu")

    def float(self) -> "Module":
        return self.to(_dtype.float32)

    def double(self) -> "Module":
        return self.to(_dtype.float64)

    def half(self) -> "Module":
        return self.to(_dtype.float16)

    def type(self, dst_type) -> "Module":
        return self.to(dst_type)

    # ---- printing --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        if not self._modules:
            return f"{self._get_name()}({extra})"
        body = "\n  ".join(lines)
        return f"{self._get_name()}(\n  {body}\n)"

    def __dir__(self):
        return sorted(set(object.__dir__(self)))

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)
