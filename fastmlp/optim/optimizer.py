"""``fastmlp.optim.Optimizer``: parameter groups, state, zero_grad, state_dict (``torch.optim.Optimizer``).

At the first ``step()`` the parameters of a group (when they share dtype and
device) are moved into one flat buffer, and their gradients and optimizer state
into flat buffers of the same layout: each parameter's ``.data``, ``.grad`` and
state tensors become views into them. A step is then a single native call over
three or four flat arrays. Whenever that layout no longer holds (a parameter
without a gradient this step, a ``.data`` rebound by the user), the step runs
over the per-parameter views instead — the same update, in one multi-tensor call.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, NamedTuple, Optional

import numpy as np

from .. import _C, _dtype
from ..autograd import bump, bump_counter, enable_grad, version_counter
from ..backend import for_array
from ..tensor import Tensor, _wrap


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


_ALIGN = 64  # bytes: one cache line, one AVX-512 vector


def _owner(a):
    """The array that owns a's memory (NumPy and CuPy views point there through .base)."""
    return a if a.base is None else a.base


def _aligned_zeros(n: int, dtype, xp):
    """n zeros whose first element sits on a 64-byte boundary (CuPy's allocator already does this)."""
    if xp is not np:
        return xp.zeros(n, dtype=dtype)
    item = np.dtype(dtype).itemsize
    raw = np.zeros(n + _ALIGN // item, dtype=dtype)
    skip = (-raw.ctypes.data % _ALIGN) // item
    return raw[skip:skip + n]


class _FlatGroup:
    """One contiguous buffer for a group's parameters, one for their gradients, one per state kind.

    Each parameter starts on a 64-byte boundary, so the kernels' vector loads of every
    weight row start aligned; the few padding elements between parameters stay zero in
    every buffer (a zero gradient leaves a zero parameter and zero state unchanged).
    """

    def __init__(self, params: list, xp):
        self.xp = xp
        self.shapes = [p._data.shape for p in params]
        self.sizes = [int(p._data.size) for p in params]
        dt = params[0]._data.dtype
        step = max(1, _ALIGN // np.dtype(dt).itemsize)
        padded = [-(-n // step) * step for n in self.sizes]
        self.offsets = [int(o) for o in np.cumsum([0] + padded[:-1])]
        total = int(sum(padded))
        self.param = _aligned_zeros(total, dt, xp)
        self.grad = _aligned_zeros(total, dt, xp)
        self._param_owner, self._grad_owner = _owner(self.param), _owner(self.grad)
        self.param_version = version_counter(self.param)  # bumped by every flat step (_flat_update_done)
        self.state: dict[str, Any] = {}
        self.synced: set = set()
        self.index = {id(p): i for i, p in enumerate(params)}
        for p, off, n, shape in zip(params, self.offsets, self.sizes, self.shapes):
            view = self.param[off:off + n].reshape(shape)
            view[...] = p._data
            p._data = view
            gview = self.grad[off:off + n].reshape(shape)
            if p.grad is not None:
                gview[...] = p.grad._data
                p.grad = _wrap(gview)
            p._grad_buf = gview

    def move_grad(self, params: list, new) -> None:
        """Make `new` the gradient buffer: a 1-D array of the same size and dtype that starts on a
        64-byte boundary and whose views have one base. The values are copied, and every parameter's
        gradient (and gradient buffer) becomes a view of `new`. DistributedDataParallel moves it into
        memory the processes of a machine share, where the gradients are averaged in place."""
        if new.shape != self.grad.shape or new.dtype != self.grad.dtype or new.ctypes.data % _ALIGN:
            raise ValueError(f"move_grad: the new buffer must be {self.grad.dtype} [{self.grad.size}] on a "
                             f"{_ALIGN}-byte boundary; got {new.dtype} {list(new.shape)}")
        new[...] = self.grad
        self.grad = new
        self._grad_owner = _owner(new)
        for p, off, n, shape in zip(params, self.offsets, self.sizes, self.shapes):
            gview = new[off:off + n].reshape(shape)
            if p.grad is not None:
                gview[...] = p.grad._data
                p.grad = _wrap(gview)
            p._grad_buf = gview

    def move_param(self, params: list, new) -> None:
        """Make `new` the parameter buffer, as move_grad does for the gradients, without copying (the
        caller has filled it): every parameter's data becomes a view of `new`. The processes of a
        machine share one parameter buffer this way during a data-parallel fit."""
        if new.shape != self.param.shape or new.dtype != self.param.dtype or new.ctypes.data % _ALIGN:
            raise ValueError(f"move_param: the new buffer must be {self.param.dtype} [{self.param.size}] on a "
                             f"{_ALIGN}-byte boundary; got {new.dtype} {list(new.shape)}")
        self.param = new
        self._param_owner = _owner(new)
        self.param_version = version_counter(new)
        for p, view in zip(params, self.views(new)):
            p._data = view

    def move_state(self, opt: "Optimizer", params: list, key: str, new) -> None:
        """Make `new` (filled by the caller) the flat state `key`; when the parameters' state tensors
        are views of the flat state (see ensure_state), they become views of `new`."""
        if new.shape != self.param.shape or new.dtype != self.param.dtype or new.ctypes.data % _ALIGN:
            raise ValueError(f"move_state: the new buffer must be {self.param.dtype} [{self.param.size}] on a "
                             f"{_ALIGN}-byte boundary; got {new.dtype} {list(new.shape)}")
        self.state[key] = new
        if key in self.synced:
            for p, view in zip(params, self.views(new)):
                opt.state[p][key] = _wrap(view)

    def views(self, flat) -> list:
        return [flat[off:off + n].reshape(shape) for off, n, shape in zip(self.offsets, self.sizes, self.shapes)]

    def intact(self, params: list) -> bool:
        """Every parameter still lives in the flat buffer and has its gradient in the flat gradient buffer."""
        pf, gf = self._param_owner, self._grad_owner
        for p in params:
            if p._data.base is not pf:
                return False
            g = p._grad
            if g is None or g._data.base is not gf:
                return False
        return True

    def state_flat(self, key: str):
        flat = self.state.get(key)
        if flat is None:
            flat = self.state[key] = _aligned_zeros(self.param.size, self.param.dtype, self.xp)
        return flat

    def state_view(self, key: str, i: int):
        """Parameter i's slice of the flat state `key`, shaped like the parameter."""
        off, n = self.offsets[i], self.sizes[i]
        return self.state_flat(key)[off:off + n].reshape(self.shapes[i])

    def ensure_state(self, opt: "Optimizer", params: list, key: str):
        """The flat array of state `key`, with every parameter's state tensor a view into it."""
        flat = self.state_flat(key)
        if key in self.synced:
            return flat
        for i, p in enumerate(params):
            view = self.state_view(key, i)
            cur = opt.state[p].get(key)
            if cur is None:
                view[...] = 0
            elif cur._data.base is not _owner(flat):
                view[...] = cur._data
            opt.state[p][key] = _wrap(view)
        self.synced.add(key)
        return flat


class FlatUpdate(NamedTuple):
    """One SGD or Adam(W) update of a group over its flat buffers, with PyTorch's options by name
    (see SGD._flat_update, Adam._flat_update). Optimizers run it themselves (one multi-tensor
    call); the native MLP program takes it as ``native()``, a ``fastmlp._C.MlpUpdate``."""

    kind: str
    param: Any
    grad: Any
    lr: float
    weight_decay: float
    maximize: bool
    momentum: float = 0.0                 # SGD
    dampening: float = 0.0
    nesterov: bool = False
    first_step: bool = False              # momentum buffers start at this step's gradient
    momentum_buffer: Any = None
    beta1: float = 0.9                    # Adam
    beta2: float = 0.999
    eps: float = 1e-8
    step: int = 1                         # Adam's step count after this update
    amsgrad: bool = False
    decoupled_weight_decay: bool = False  # AdamW
    exp_avg: Any = None
    exp_avg_sq: Any = None
    max_exp_avg_sq: Any = None

    # Named constructors: the generated keyword __new__ costs about 2 us per call, an optimizer
    # step makes one, and a seed-001 step takes about 120 us; these build the tuple directly.
    @classmethod
    def sgd(cls, param, grad, lr: float, weight_decay: float, maximize: bool, momentum: float, dampening: float,
            nesterov: bool, first_step: bool, momentum_buffer) -> "FlatUpdate":
        return _tuple_new(cls, ("sgd", param, grad, lr, weight_decay, maximize, momentum, dampening, nesterov,
                                first_step, momentum_buffer, 0.9, 0.999, 1e-8, 1, False, False, None, None, None))

    @classmethod
    def adam(cls, param, grad, lr: float, weight_decay: float, maximize: bool, beta1: float, beta2: float,
             eps: float, step: int, amsgrad: bool, decoupled_weight_decay: bool, exp_avg, exp_avg_sq,
             max_exp_avg_sq) -> "FlatUpdate":
        return _tuple_new(cls, ("adam", param, grad, lr, weight_decay, maximize, 0.0, 0.0, False, False, None,
                                beta1, beta2, eps, step, amsgrad, decoupled_weight_decay, exp_avg, exp_avg_sq,
                                max_exp_avg_sq))

    def apply(self) -> None:
        """Run the update now: one native multi-tensor step over the flat buffers (what the
        optimizer's own step does; the native program applies it layer by layer instead)."""
        # One unpacking of every field, in declaration order (a test pins each name to its place):
        # cheaper than reading a dozen of them one attribute at a time at every optimizer step.
        (kind, param, grad, lr, weight_decay, maximize, momentum, dampening, nesterov, first_step, momentum_buffer,
         beta1, beta2, eps, step, amsgrad, decoupled_weight_decay, exp_avg, exp_avg_sq, max_exp_avg_sq) = self
        be = for_array(param)
        if kind == "adam":
            be.adam_step([param], [grad], [exp_avg], [exp_avg_sq], None if max_exp_avg_sq is None else [max_exp_avg_sq],
                         lr, beta1, beta2, eps, weight_decay, step, amsgrad, maximize, decoupled_weight_decay)
        else:
            be.sgd_step([param], [grad], None if momentum_buffer is None else [momentum_buffer], lr, momentum,
                        dampening, weight_decay, nesterov, maximize, first_step)

    def next(self) -> "FlatUpdate":
        """The update of the following step when nothing else ran between: Adam's step count
        advances, and SGD's momentum buffers exist after the first step."""
        return self._replace(step=self.step + 1, first_step=False)

    def after(self, n: int) -> "FlatUpdate":
        """The update n steps later (n >= 0) when nothing else ran between."""
        return self if n == 0 else self._replace(step=self.step + n, first_step=False)

    def native(self):
        """The same update as the native program's ``MlpUpdate``."""
        u = _C.MlpUpdate()
        for name in _NATIVE_FIELDS:
            setattr(u, name, getattr(self, name))
        return u


_NATIVE_FIELDS = FlatUpdate._fields
_tuple_new = tuple.__new__


class Optimizer:
    """Base class: subclasses implement ``_step_group(group)`` (``torch.optim.Optimizer``)."""

    def __init__(self, params: Iterable, defaults: dict):
        self.defaults = defaults
        self.state: dict = defaultdict(dict)
        self.param_groups: list[dict] = []
        self._flat: dict[int, Optional[_FlatGroup]] = {}
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict; got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if not p.dtype.is_floating_point:
                raise ValueError(f"optimizer can only optimize floating-point tensors; got {p.dtype}")
        if len(set(map(id, params))) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = dict(param_group)
        group["params"] = params
        for k, v in self.defaults.items():
            if v is required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {k}")
            group.setdefault(k, v)
        self.param_groups.append(group)
        # The group's parameters move into its flat buffers now, before any step or forward pass:
        # the native program is then built once over the arrays they keep (see _flat_for).
        self._flat_for(group, force=True)

    # ---- gradients -------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None by default, as PyTorch 2)."""
        for g in self.param_groups:
            for p in g["params"]:
                if p._grad is None:
                    continue
                if set_to_none:
                    p._grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad = p.grad.detach()
                    p.grad._data[...] = 0

    # ---- stepping --------------------------------------------------------------------------------
    def step(self, closure: Optional[Callable] = None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _flat_update(self, group: dict) -> Optional[FlatUpdate]:
        """The group's next update as one native call over its flat buffers (see SGD and Adam), for
        code that runs it itself (fastmlp.nn.program), or None when this optimizer has none."""
        return None

    def _step_flat(self, group: dict) -> bool:
        """Step the group with one native call over its flat buffers, when _flat_update gives an
        update for it; False: the subclass steps its parameters one by one."""
        u = self._flat_update(group)
        if u is None:
            return False
        u.apply()
        self._flat_update_done(group, u)
        return True

    def _flat_update_done(self, group: dict, update) -> None:
        """Bookkeeping after `update` (from _flat_update) was applied: the parameters were written
        in place, which counts in their version counter as PyTorch's in-place update does, so a
        graph recorded before the step and backwarded after it raises instead of reading the
        updated values (subclasses add their step counts)."""
        flat = self._flat.get(id(group))
        if flat is not None and update.param is flat.param:
            bump_counter(flat.param_version)
        else:
            bump(update.param)

    @staticmethod
    def _updated(params: list) -> None:
        """Count the in-place update of parameters stepped one by one (see _flat_update_done)."""
        for p in params:
            bump(p._data)

    def _flat_for(self, group: dict, force: bool = False) -> Optional[_FlatGroup]:
        """The group's flat layout (its parameter arena), made when the group is added (with
        force=True) if its parameters share dtype and device, else at the first step where every
        parameter has a gradient; a group whose parameters differ in dtype or device never gets
        one. Each parameter's data and gradient buffer become views into the flat buffers.
        """
        key = id(group)
        flat = self._flat.get(key)
        if flat is not None or (key in self._flat and not force):
            return flat
        params = group["params"]
        first = params[0]._data
        uniform = all(type(p._data) is type(first) and p._data.dtype == first.dtype for p in params)
        have_grads = all(p.grad is not None for p in params)
        if uniform and (have_grads or force):
            flat = _FlatGroup(params, for_array(first).xp)
        if flat is not None or have_grads:
            self._flat[key] = flat
        return flat

    @staticmethod
    def _with_grads(group: dict) -> list:
        return [p for p in group["params"] if p.grad is not None]

    # ---- state_dict --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, as PyTorch."""
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = {k: self._export_state(k, v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    @staticmethod
    def _export_state(key: str, value):
        if key == "step":
            return _wrap(np.asarray(float(value), dtype=np.float32))
        return value

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by state_dict() (copied into this optimizer's buffers)."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups; this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"loaded state dict contains a parameter group {i} of {len(sg['params'])} parameters "
                                 f"that doesn't match the size of optimizer's group ({len(g['params'])})")
        id_map = {}
        for g, sg in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], sg["params"]):
                id_map[idx] = p
        saved_state = state_dict["state"]
        for idx, st in saved_state.items():
            key = int(idx)
            if key not in id_map:
                raise ValueError(f"loaded state refers to parameter index {key}, which no group contains")
            p = id_map[key]
            new = {}
            for k, v in st.items():
                if k == "step":
                    new[k] = int(float(v.item() if isinstance(v, Tensor) else v))
                elif isinstance(v, Tensor):
                    if tuple(v.shape) != tuple(p.shape):
                        raise ValueError(f"state '{k}' of parameter {key} has shape {list(v.shape)}; the parameter "
                                         f"has {list(p.shape)}")
                    cur = self.state[p].get(k) if p in self.state else None
                    if isinstance(cur, Tensor) and cur._data.shape == tuple(v.shape):
                        cur._data[...] = v.to(dtype=p.dtype, device=p.device)._data
                        new[k] = cur
                    else:
                        new[k] = _wrap(v.to(dtype=p.dtype, device=p.device)._data.copy())
                else:
                    new[k] = v
            self.state[p] = new
        for g, sg in zip(self.param_groups, saved_groups):
            for k, v in sg.items():
                if k != "params":
                    g[k] = v
        self._after_load()

    def _after_load(self) -> None:
        """Loaded state may not live in the flat buffers: re-home it on the next step."""
        for flat in self._flat.values():
            if flat is not None:
                flat.synced.clear()

    def _state(self, p: Tensor, key: str, group: dict):
        """Parameter p's state tensor `key` (zeros when new), inside the group's flat layout if it has one."""
        st = self.state[p]
        cur = st.get(key)
        if cur is not None:
            return cur._data
        flat = self._flat.get(id(group))
        if flat is not None and id(p) in flat.index:
            arr = flat.state_view(key, flat.index[id(p)])
            arr[...] = 0
            flat.synced.discard(key)
        else:
            arr = for_array(p._data).xp.zeros_like(p._data)
        st[key] = _wrap(arr)
        return arr


def _check_lr(lr) -> None:
    if isinstance(lr, Tensor):
        lr = lr.item()
    if lr is not required and not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def _float_dtype_ok(p: Tensor) -> bool:
    return p.dtype in (_dtype.float32, _dtype.float64, _dtype.float16)
