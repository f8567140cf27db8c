"""Containers: Sequential and ModuleList (``torch.nn.Sequential``, ``torch.nn.ModuleList``)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Iterator, Optional, Union

from ..tensor import Tensor
from . import plan as _plan
from . import program as _program
from .module import Module


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: modules registered under "0", "1", ... (or a
    Sequential's own names), indexed, iterated and grown in order."""

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range")
        return idx % n

    def _renumber(self, items: list) -> None:
        """Register `items` in place of the current modules, under "0", "1", ..."""
        for key in list(self._modules.keys()):
            delattr(self, key)
        for i, m in enumerate(items):
            self.add_module(str(i), m)

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, list(self._modules.keys())[self._index(idx)], module)

    def __delitem__(self, idx: Union[int, slice]) -> None:
        items = list(self._modules.values())
        del items[idx if isinstance(idx, slice) else self._index(idx)]
        self._renumber(items)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._renumber(items)
        return self


class Sequential(_ModuleSequence):
    """Runs its modules in order (``torch.nn.Sequential``).

    An MLP of Linear blocks — each Linear optionally followed by ReLU, LeakyReLU,
    Sigmoid, Tanh or GELU and a Dropout, behind an optional leading Flatten — called
    on a float32 CPU tensor runs its forward pass in one native call and, when
    gradients are enabled, its backward in one more (``fastmlp.nn.program``). The
    results and gradients are bitwise those of running the modules one by one, which
    is what runs for any other Sequential or input. ``fastmlp.nn.explain(model)`` says
    which route a model takes and why (see ``fastmlp.nn.plan``).
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def __getitem__(self, idx: Union[int, slice]):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_route", None)  # native and rebuilt on demand: never pickled or copied
        return state

    def forward(self, input):
        # One plan (fastmlp.nn.plan) decides: the native MLP program for float32 CPU inputs,
        # else the modules one by one.
        if type(input) is Tensor and _program.enabled:
            route = self.__dict__.get("_route")
            if route is None or not route.current():
                route = self.__dict__["_route"] = _program.Route(tuple(self._modules.values()))
                if _plan.explain_enabled():
                    _plan.log_once(self)
            if route.program is not None and route.usable(input):
                return route(input)
        x = input
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules that registers them (``torch.nn.ModuleList``)."""

    def __init__(self, modules: Optional[Iterable[Module]] = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: Union[int, slice]):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(self._index(idx))]

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)

    def insert(self, index: int, module: Module) -> None:  # (PyTorch's returns None, Sequential's itself)
        super().insert(index, module)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is a container and has no forward(); iterate over its modules")
