"""Containers: Sequential and ModuleList (``torch.nn.Sequential``, ``torch.nn.ModuleList``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Optional, Union

from ..tensor import Tensor
from . import plan as _plan
from . import program as _program
from .module import Module


class Sequential(Module):
    """Runs its modules in order (``torch.nn.Sequential``).

    An MLP of Linear blocks — each Linear optionally followed by ReLU, LeakyReLU,
    Sigmoid, Tanh or GELU and a Dropout, behind an optional leading Flatten — called
    on a float32 CPU tensor runs its forward pass in one native call and, when
    gradients are enabled, its backward in one more (``fastmlp.nn.program``); on other
    devices and dtypes each Linear applies its activation in its GEMM epilogue. The
    results and gradients are bitwise those of running the modules one by one, which
    is what runs for any other Sequential. ``fastmlp.nn.explain(model)`` says which
    route a model takes and why (see ``fastmlp.nn.plan``).
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range")
        return idx % n

    def __getitem__(self, idx: Union[int, slice]):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules.keys())[self._index(idx)]
        setattr(self, key, module)

    def __delitem__(self, idx: Union[int, slice]) -> None:
        keys = list(self._modules.keys())
        for key in (keys[idx] if isinstance(idx, slice) else [keys[self._index(idx)]]):
            delattr(self, key)
        items = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_route", None)  # native and rebuilt on demand: never pickled or copied
        return state

    def append(self, module: Module) -> "Sequential":
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "Sequential":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> "Sequential":
        items = list(self._modules.values())
        items.insert(index if index >= 0 else len(items) + index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self.add_module(str(i), m)
        return self

    def forward(self, input):
        # One plan (fastmlp.nn.plan) decides: the native MLP program for float32 CPU inputs, the
        # plan's blocks one op each for other devices and dtypes, else the modules one by one.
        if type(input) is Tensor and _program.enabled:
            route = self.__dict__.get("_route")
            if route is None or not route.current():
                route = self.__dict__["_route"] = _program.Route(tuple(self._modules.values()))
                if _plan.explain_enabled():
                    _plan.log_once(self)
            if route.program is not None and route.usable(input):
                return route(input)
            if route.plan is not None:
                return _program.run_blocks(route.plan, input)
        x = input
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules that registers them (``torch.nn.ModuleList``)."""

    def __init__(self, modules: Optional[Iterable[Module]] = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range")
        return idx % n

    def __getitem__(self, idx: Union[int, slice]):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(self._index(idx))]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, str(self._index(idx)), module)

    def __delitem__(self, idx: Union[int, slice]) -> None:
        items = list(self._modules.values())
        del items[idx]
        for k in list(self._modules.keys()):
            delattr(self, k)
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        for k in list(self._modules.keys()):
            delattr(self, k)
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is a container and has no forward(); iterate over its modules")
