"""The model generation: a process-wide counter that every change to modules able to alter how a
model runs natively advances.

The native MLP program (``fastmlp.nn.program``) is built over a model's modules, their settings
and their parameters' arrays, and reused while none of them changes. Instead of comparing the
modules and settings on every call, the places that change them advance this counter:

- replacing or deleting a parameter or child module, and adding or removing a forward hook
  (``fastmlp.nn.Module``; registering a new name drops only that module's own route);
- setting an attribute of a module whose settings the program reads (Dropout, Flatten, the
  activations: ``Module._affects_plan``) to a new value, and ``train()``/``eval()`` changing
  a module's mode.

A program is reused while the counter reads what it read when the program was built and every
parameter still holds the array it was built over (checked on each call: a tensor given a new
array, by ``.data = ...``, ``.to()`` or an optimizer's flat layout, advances nothing).
"""
from __future__ import annotations

value = [0]


def advance() -> None:
    """Mark every native program built so far as possibly stale."""
    value[0] += 1
