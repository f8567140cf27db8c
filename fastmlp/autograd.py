"""Reverse-mode automatic differentiation (``torch.autograd``).

Every differentiable op that produces a tensor from inputs that require grad
records one :class:`Node`. ``Tensor.backward`` walks the graph of nodes in
topological order (iteratively, so long graphs cannot hit the recursion limit),
calls each node's ``backward`` on the gradient of its output, and accumulates the
results into the ``.grad`` of the leaf tensors, exactly as PyTorch does:
gradients add up across backward calls until they are zeroed.

Gradients travel as raw arrays (NumPy or CuPy); only leaves see Tensors.
"""
from __future__ import annotations

import functools
import inspect
import sys
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "Node", "backward", "grad"]


_ndarray = np.ndarray


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """Whether ops record the graph for backward (``torch.is_grad_enabled``)."""
    return _GradMode.enabled


class _GradModeContext:
    """Base of the grad-mode switches: a context manager and a function decorator.

    As a decorator it sets the mode around every call of the function (around every
    step of a generator function), then restores the mode the caller had.
    """

    _target: bool

    def __enter__(self):
        self._previous = _GradMode.enabled
        _GradMode.enabled = self._target
        return None

    def __exit__(self, *exc) -> bool:
        _GradMode.enabled = self._previous
        return False

    def __call__(self, fn: Callable) -> Callable:
        target = self._target
        if inspect.isgeneratorfunction(fn):
            return _generator_in_mode(fn, target)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            previous = _GradMode.enabled
            _GradMode.enabled = target
            try:
                return fn(*args, **kwargs)
            finally:
                _GradMode.enabled = previous

        return wrapper


def _generator_in_mode(fn: Callable, target: bool) -> Callable:
    """Wrap a generator function so that its body runs with grad mode `target` (the caller's mode
    is restored whenever the generator yields, as PyTorch's decorators do)."""

    def in_mode(method: Callable, *arg):
        previous = _GradMode.enabled
        _GradMode.enabled = target
        try:
            return method(*arg)
        finally:
            _GradMode.enabled = previous

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        gen = fn(*args, **kwargs)
        try:
            response = in_mode(gen.send, None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    in_mode(gen.close)
                    raise
                except BaseException as exc:
                    response = in_mode(gen.throw, exc)
                else:
                    response = in_mode(gen.send, request)
        except StopIteration as stop:
            return stop.value

    return wrapper


class _NoArgDecorator(_GradModeContext):
    """A switch that also decorates without parentheses: ``@no_grad`` as well as ``@no_grad()``."""

    def __new__(cls, orig_func: Optional[Callable] = None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_NoArgDecorator):
    """Disable graph recording: ``with fastmlp.no_grad(): ...``, ``@fastmlp.no_grad`` or
    ``@fastmlp.no_grad()`` (``torch.no_grad``)."""

    _target = False


class enable_grad(_NoArgDecorator):
    """Re-enable graph recording inside a ``no_grad`` block (``torch.enable_grad``), also as a decorator."""

    _target = True


class set_grad_enabled(_GradModeContext):
    """``set_grad_enabled(mode)`` (``torch.set_grad_enabled``): sets grad mode now; as a context it
    restores the previous mode on exit, and as a decorator it restores it at once and sets `mode`
    only around each call of the decorated function."""

    def __init__(self, mode: bool):
        self._target = bool(mode)
        self._previous = _GradMode.enabled
        _GradMode.enabled = self._target

    def __enter__(self):
        _GradMode.enabled = self._target
        return None

    def __call__(self, fn: Callable) -> Callable:
        _GradMode.enabled = self._previous
        return super().__call__(fn)


# ---- version counters ------------------------------------------------------------------------
# In-place modifications of any storage so far (a module global: the cheapest value to read
# where every node is made). A node records this count; when it is unchanged at backward
# (the usual case) none of the tensors it saved can have been modified.
_bumps = 0


class _StorageVersion:
    """The version counter of one storage (``Tensor._version``): the array owning the memory,
    weakly referenced; ``last`` is the value of _bumps at its latest modification."""

    __slots__ = ("version", "last", "ref")

    def __init__(self, ref):
        self.version = 0
        self.last = 0
        self.ref = ref


_STORAGE_VERSIONS: dict = {}  # id(owning array) -> _StorageVersion, for storages modified in place


def storage_of(a):
    """The array that owns a's memory: a tensor, its views and every tensor sharing its array
    lead to the same one, so they share one version counter."""
    b = a.base
    while b is not None and (type(b) is type(a) or isinstance(b, _ndarray)):
        a = b
        b = a.base
    return a


def _storage_version(owner, create: bool) -> Optional[_StorageVersion]:
    key = id(owner)
    entry = _STORAGE_VERSIONS.get(key)
    if entry is not None and entry.ref() is owner:
        return entry
    if not create:
        return None

    def forget(ref, key=key):
        current = _STORAGE_VERSIONS.get(key)
        if current is not None and current.ref is ref:
            del _STORAGE_VERSIONS[key]

    try:
        entry = _StorageVersion(weakref.ref(owner, forget))
    except TypeError:  # an array type without weak references: its versions are not tracked
        return None
    _STORAGE_VERSIONS[key] = entry
    return entry


def bump(a) -> None:
    """Count one in-place modification of array a's storage (call it after the write).

    Every in-place tensor op calls this; writes to raw arrays (optimizer steps, the
    kernels filling their own outputs) do not, as they are not tensor operations.
    """
    bump_counter(_storage_version(storage_of(a), True))


def version_counter(a) -> Optional[_StorageVersion]:
    """The version counter of array a's storage, for a caller that bumps the same storage often
    (an optimizer's flat parameter buffer): valid while the caller keeps `a` alive."""
    return _storage_version(storage_of(a), True)


def bump_counter(entry: Optional[_StorageVersion]) -> None:
    """bump() for a storage whose counter the caller holds (see version_counter)."""
    global _bumps
    n = _bumps + 1
    _bumps = n
    if entry is not None:
        entry.version += 1
        entry.last = n


def version(a) -> int:
    """How many in-place modifications array a's storage has had (``Tensor._version``)."""
    entry = _storage_version(storage_of(a), False)
    return 0 if entry is None else entry.version


_LEGACY_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor", "int64": "LongTensor",
                 "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor", "uint8": "ByteTensor",
                 "bool": "BoolTensor"}


def legacy_type_name(a) -> str:
    """PyTorch's name for the type of a tensor holding array a: fastmlp.FloatTensor, fastmlp.cuda.LongTensor, ..."""
    name = _LEGACY_NAMES.get(str(a.dtype), "Tensor")
    return f"fastmlp.{name}" if type(a) is _ndarray else f"fastmlp.cuda.{name}"


def _check_saved_versions(node: "Node") -> None:
    """Raise if a tensor whose data node saved for backward was modified in place since node was recorded."""
    seq = node.seq
    for field, edge in node.SAVED_TENSORS:
        if edge >= 0 and node.next[edge] is None:
            continue
        value = getattr(node, field, None)
        for arr in (value if isinstance(value, tuple) else (value,)):
            if arr is None or not hasattr(arr, "base") or not hasattr(arr, "dtype"):
                continue
            entry = _storage_version(storage_of(arr), False)
            if entry is not None and entry.last > seq:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{legacy_type_name(arr)} {list(arr.shape)}], which {node.name()} saved for its "
                    f"backward, is at version {entry.version}, but was modified in place after it was saved. "
                    "Hint: clone() the tensor before modifying it, or modify it only after backward().")


_FREED_MESSAGE = (
    "Trying to backward through the graph a second time: the values this graph saved for its "
    "gradients were freed by the first backward(). Pass retain_graph=True to the first backward() "
    "(or autograd.grad()) to keep them."
)


class Node:
    """One recorded op: computes the gradients of its inputs from that of its output.

    ``next`` holds one edge per input: the input's own Node, the input itself when
    it is a leaf that requires grad, or None when no gradient flows there.
    Subclasses implement ``backward(grad) -> tuple`` (one array or None per edge);
    those that keep arrays for backward set ``SAVES = True`` and implement ``release``.

    ``SAVED_TENSORS`` names the fields holding the data of tensors (inputs or outputs)
    that backward reads, each with the edge whose gradient needs it (-1: every edge).
    ``seq`` is the in-place modification count when the node was recorded: backward
    raises, as PyTorch does, when such a tensor was modified in place since (see bump).
    """

    __slots__ = ("next", "kinds", "freed", "retained", "hooks", "seq", "__weakref__")
    SAVES = False
    SAVED_TENSORS: tuple = ()

    def __init__(self, inputs: Sequence[Any]):
        edges = []
        kinds = []  # per edge: 0 none, 1 a node, 2 a leaf that requires grad
        for t in inputs:
            if t is None:
                edges.append(None)
                kinds.append(0)
                continue
            fn = t.grad_fn
            if fn is not None:
                edges.append(fn)
                kinds.append(1)
            elif t._requires_grad:
                edges.append(t)
                kinds.append(2)
            else:
                edges.append(None)
                kinds.append(0)
        self.next = tuple(edges)
        self.kinds = tuple(kinds)
        self.freed = False
        self.retained = None
        self.hooks = None
        self.seq = _bumps

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def release(self) -> None:
        """Drop saved arrays (called after a backward without retain_graph)."""

    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"

    @property
    def next_functions(self) -> tuple:
        out = []
        for e in self.next:
            if e is None:
                out.append((None, 0))
            elif isinstance(e, Node):
                out.append((e, 0))
            else:
                out.append((AccumulateGrad(e), 0))
        return tuple(out)


class AccumulateGrad:
    """What ``next_functions`` shows for a leaf (PyTorch's AccumulateGrad)."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


def _edge(t):
    if t is None:
        return None
    fn = getattr(t, "grad_fn", None)
    if fn is not None:
        return fn
    if getattr(t, "requires_grad", False):
        return t
    return None


class _Engine:
    # Nodes may write leaf gradients straight into .grad (grad_sink) only during
    # Tensor.backward, never while autograd.grad collects gradients instead.
    leaf_writes = True


def grad_sink(leaf):
    """Where a kernel may write the gradient of ``leaf`` directly: (array, accumulate).

    Returns None when the gradient must go through accumulate() instead (hooks, or
    while autograd.grad is collecting). When the leaf has a grad, the kernel adds
    to it in place. When it has none, the array is the leaf's persistent gradient
    buffer, reused across steps (no allocation); the kernel overwrites it and
    commit_sink makes it the new .grad. A buffer still referenced elsewhere (a
    caller kept an old .grad) is never overwritten: a fresh one replaces it.
    """
    if not _Engine.leaf_writes or leaf._hooks:
        return None
    g = leaf._grad
    data = leaf._data
    if g is not None:
        gd = g._data
        if g.grad_fn is not None or gd.shape != data.shape or gd.dtype != data.dtype or type(gd) is not type(data):
            return None
        return gd, True
    buf = leaf._grad_buf
    # Reuse the buffer only if nothing else references it: the slot, this local and
    # getrefcount's argument account for 3 (a caller keeping an old .grad makes more).
    if buf is None or buf.shape != data.shape or buf.dtype != data.dtype or type(buf) is not type(data) \
            or sys.getrefcount(buf) > 3:
        buf = leaf._grad_buf = type(data)(data.shape, dtype=data.dtype)
    return buf, False


# fastmlp.tensor's _wrap and Tensor, bound when fastmlp.tensor is imported (it imports this module)
_wrap = None
_Tensor = None


def commit_sink(leaf, buf, accumulated: bool) -> None:
    """Make ``buf`` (filled by a kernel through grad_sink) the leaf's ``.grad``."""
    if not accumulated:
        leaf._grad = _wrap(buf)


def accumulate(leaf, g) -> None:
    """leaf.grad += g (or = g when it has none), running the leaf's hooks first."""
    if leaf._hooks:
        for hook in leaf._hooks:
            out = hook(_wrap(g))
            if out is not None:
                g = out._data
    if g.shape != leaf._data.shape:
        g = g.reshape(leaf._data.shape) if g.size == leaf._data.size else _sum_to(g, leaf._data.shape)
    if g.dtype != leaf._data.dtype:
        g = g.astype(leaf._data.dtype)
    cur = leaf._grad
    if cur is None:
        sink = grad_sink(leaf)
        if sink is not None:
            buf, _ = sink
            buf[...] = g
            leaf._grad = _wrap(buf)
        else:
            leaf._grad = _wrap(g.copy())
    else:
        cur._data += g


def _sum_to(g, shape):
    from .ops.common import unbroadcast

    return unbroadcast(g, shape)


def _dependencies(roots) -> dict:
    """For every node reachable from roots: how many reachable edges point at it."""
    deps: dict = {}
    stack = list(roots)
    seen = set(stack)
    push = stack.append
    while stack:
        node = stack.pop()
        for e, k in zip(node.next, node.kinds):
            if k == 1:
                if e in deps:
                    deps[e] += 1
                else:
                    deps[e] = 1
                if e not in seen:
                    seen.add(e)
                    push(e)
    return deps


def run_backward(tensors: Sequence[Any], grads: Sequence[Any], retain_graph: bool,
                 inputs: Optional[Sequence[Any]] = None) -> Optional[list]:
    """Backpropagate ``grads`` (arrays) from ``tensors``.

    Without ``inputs``: accumulate into leaves' ``.grad``. With ``inputs``: return
    the gradients w.r.t. those tensors instead (``autograd.grad``), leaving .grad alone.
    """
    capture = None
    cap_nodes = {}
    if inputs is not None:
        capture = {id(t): None for t in inputs}
        cap_nodes = {id(t.grad_fn): id(t) for t in inputs if t.grad_fn is not None}
    _Engine.leaf_writes = capture is None
    try:
        return _run(tensors, grads, retain_graph, capture, cap_nodes, inputs)
    finally:
        _Engine.leaf_writes = True


# Callbacks to run once the backward pass in progress has finished (queue_callback).
_end_callbacks: list = []


def queue_callback(callback: Callable[[], None]) -> None:
    """Run ``callback()`` once, when the backward pass now running has finished writing the leaves'
    gradients (PyTorch's ``Variable._execution_engine.queue_callback``); queueing the same callback
    twice in one pass runs it once. DistributedDataParallel averages the gradients there."""
    if callback not in _end_callbacks:
        _end_callbacks.append(callback)


def _run(tensors, grads, retain_graph, capture, cap_nodes, inputs):
    try:
        if capture is None and len(tensors) == 1 and tensors[0].grad_fn is not None:
            out = _run_path(tensors[0].grad_fn, grads[0], retain_graph)
        else:
            out = _run_graph(tensors, grads, retain_graph, capture, cap_nodes, inputs)
    except BaseException:
        _end_callbacks.clear()
        raise
    if _end_callbacks:
        callbacks = list(_end_callbacks)
        _end_callbacks.clear()
        for callback in callbacks:
            callback()
    return out


def _run_path(node, g, retain_graph) -> None:
    """Backward from one root while every node met has at most one edge to another node
    (a training step's loss -> network -> leaves): each node is then reached once, by one
    path, so it runs as soon as its gradient is known, with no dependency counts. At the
    first node with two or more node edges, the general engine takes over from there."""
    handled = _HANDLED
    while True:
        if node.kinds.count(1) > 1:
            _run_graph_from(node, g, retain_graph)
            return
        grads_in = _apply(node, _receive(node, g), retain_graph)
        nxt = None
        for e, k, gi in zip(node.next, node.kinds, grads_in):
            if k == 1:
                nxt, g = e, gi
            elif k == 2 and gi is not None and gi is not handled:
                accumulate(e, gi)
        if nxt is None or g is None:  # no gradient reaches the rest of the path
            return
        node = nxt


def _run_graph_from(node, g, retain_graph) -> None:
    """The general engine started at a node whose gradient is g."""
    _walk({node: g}, [node], retain_graph, None, None)


def _run_graph(tensors, grads, retain_graph, capture, cap_nodes, inputs):
    pending: dict = {}
    roots = []
    for t, g in zip(tensors, grads):
        fn = t.grad_fn
        if fn is None:
            if capture is not None:
                if id(t) in capture:
                    capture[id(t)] = g if capture[id(t)] is None else capture[id(t)] + g
            else:
                accumulate(t, g)
            continue
        pending[fn] = g if fn not in pending else pending[fn] + g
        roots.append(fn)
    _walk(pending, roots, retain_graph, capture, cap_nodes)
    if capture is not None:
        return [capture[id(t)] for t in inputs]
    return None


def _walk(pending: dict, roots: list, retain_graph, capture, cap_nodes) -> None:
    """Run every node reachable from roots once all its gradients are in (pending holds the
    roots' gradients); leaf gradients accumulate, or go to capture for autograd.grad."""
    deps = _dependencies(roots)
    ready = [r for r in dict.fromkeys(roots) if r not in deps]
    handled = _HANDLED
    while ready:
        node = ready.pop()
        g = pending.pop(node, None)
        if g is None:  # no gradient reached this node: only release its dependents
            for e, k in zip(node.next, node.kinds):
                if k == 1:
                    deps[e] -= 1
                    if deps[e] == 0:
                        ready.append(e)
            continue
        g = _receive(node, g)
        if cap_nodes and id(node) in cap_nodes:
            tid = cap_nodes[id(node)]
            capture[tid] = g if capture[tid] is None else capture[tid] + g
        grads_in = _apply(node, g, retain_graph)
        for e, k, gi in zip(node.next, node.kinds, grads_in):
            if k == 0:
                continue
            if k == 1:
                if gi is not None:
                    prev = pending.get(e)
                    pending[e] = gi if prev is None else prev + gi
                n = deps[e] - 1
                deps[e] = n
                if n == 0:
                    ready.append(e)
            elif gi is not None and gi is not handled:
                if capture is not None:
                    if id(e) in capture:
                        capture[id(e)] = gi if capture[id(e)] is None else capture[id(e)] + gi
                else:
                    accumulate(e, gi)


def _receive(node: Node, g):
    """The gradient a node runs on: g after the node's hooks (raises if its graph was freed)."""
    if node.freed:
        raise RuntimeError(_FREED_MESSAGE)
    if node.hooks is not None or node.retained is not None:
        g = _node_hooks(node, g)
    return g


def _apply(node: Node, g, retain_graph) -> tuple:
    """node.backward(g), after checking that the tensors it saved were not modified in place;
    frees what it saved unless the graph is retained."""
    if node.seq != _bumps and node.SAVED_TENSORS:
        _check_saved_versions(node)
    grads_in = node.backward(g)
    if not retain_graph and node.SAVES:
        node.release()
        node.freed = True
    return grads_in


def _node_hooks(node: Node, g):
    """Run a node's gradient hooks and fill a retained non-leaf's .grad."""
    if node.hooks:
        for hook in node.hooks:
            out = hook(_wrap(g))
            if out is not None:
                g = out._data
    if node.retained is not None:
        t = node.retained()
        if t is not None:
            t._grad = _wrap(g.copy()) if t._grad is None else _wrap(t._grad._data + g)
    return g


class _Handled:
    """Returned by a node for an edge whose leaf gradient it already wrote (see grad_sink)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HANDLED"


_HANDLED = _Handled()
HANDLED = _HANDLED


_UNITS: dict = {}
_UNIT_IDS: set = set()


def unit_grad(like):
    """The implicit gradient 1 of a one-element output: a cached read-only array per
    array type, dtype, shape (and device), so that nodes can tell it apart with is_unit()."""
    key = (type(like), like.dtype, like.shape, getattr(getattr(like, "device", None), "id", None))
    g = _UNITS.get(key)
    if g is None:
        from .backend import for_array

        g = for_array(like).xp.ones(like.shape, dtype=like.dtype)
        if hasattr(g, "flags") and hasattr(g.flags, "writeable"):
            try:
                g.flags.writeable = False
            except (AttributeError, ValueError):
                pass
        _UNITS[key] = g
        _UNIT_IDS.add(id(g))
    return g


def is_unit(g) -> bool:
    """Whether g is the implicit gradient 1 made by unit_grad (no device sync needed to know)."""
    return id(g) in _UNIT_IDS


def _as_grad_arrays(tensors, grad_tensors) -> list:
    Tensor = _Tensor
    out = []
    for t, g in zip(tensors, grad_tensors):
        if g is None:
            if t.numel() != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this tensor has shape "
                    f"{list(t.shape)}: pass backward(gradient=...) with a tensor of that shape")
            out.append(unit_grad(t._data))
        else:
            ga = g._data if isinstance(g, Tensor) else t._xp().asarray(g, dtype=t._data.dtype)
            if ga.shape != t._data.shape:
                raise RuntimeError(f"Mismatch in shape: gradient has shape {list(ga.shape)} but the tensor "
                                   f"has shape {list(t._data.shape)}")
            out.append(ga)
    return out


def _check_requires_grad(tensors) -> None:
    for i, t in enumerate(tensors):
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")


def backward(tensors, grad_tensors=None, retain_graph: Optional[bool] = None, create_graph: bool = False,
             inputs=None) -> None:
    """``torch.autograd.backward``: accumulate gradients of ``tensors`` into the leaves."""
    Tensor = _Tensor
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported")
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    _check_requires_grad(tensors)
    grads = _as_grad_arrays(tensors, grad_tensors)
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        results = run_backward(tensors, grads, bool(retain_graph), inputs=inputs)
        for t, g in zip(inputs, results):
            if g is not None:
                accumulate(t, g)
        return
    run_backward(tensors, grads, bool(retain_graph))


def backward_unit(t, retain_graph: bool) -> None:
    """``t.backward()`` without a gradient: backward(t) with the implicit gradient 1 of a
    one-element tensor, the same checks, and no lists to build (a training loop's every step)."""
    if not t._requires_grad:
        _check_requires_grad((t,))
    d = t._data
    if d.size != 1:
        _as_grad_arrays((t,), (None,))  # raises the scalar-output message
    _Engine.leaf_writes = True
    _run((t,), (unit_grad(d),), retain_graph, None, None, None)


def grad(outputs, inputs, grad_outputs=None, retain_graph: Optional[bool] = None, create_graph: bool = False,
         allow_unused: bool = False):
    """``torch.autograd.grad``: gradients of outputs w.r.t. inputs, returned (not accumulated)."""
    from .tensor import Tensor, _wrap

    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported")
    single = isinstance(inputs, Tensor)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    _check_requires_grad(outputs)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"input {i} of autograd.grad does not require grad")
    results = run_backward(outputs, _as_grad_arrays(outputs, grad_outputs), bool(retain_graph), inputs=inputs)
    out = []
    for i, g in enumerate(results):
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} was not used in the graph; pass allow_unused=True to get None for it")
        out.append(None if g is None else _wrap(g))
    return tuple(out)
