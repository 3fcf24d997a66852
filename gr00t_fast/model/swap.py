"""Layers of a loaded model replaced in place, one at a time, so that the model is never held twice.

Callers name the layers first (names only: a list of the modules, or a dict keyed by them, would keep every old
weight alive until the last layer is replaced, a second copy of the model at the peak). Each old layer is freed as
its replacement is set, and free heap pages go back to the kernel before each new buffer is made: otherwise the
load's fragmented free memory stays resident and the new buffers take fresh memory beside it (full size, packing:
peak 6.4-6.5 GB with one trim at the end, 6.0 GB trimmed per layer, as without packing).
"""

from typing import Callable

from torch import nn

from gr00t_fast.runtime.heap import release_freed_memory

__all__ = ["replace_layers"]


def replace_layers(root: nn.Module, names: list[str], convert: Callable[[nn.Module], nn.Module]) -> int:
    """Each layer of `root` named in `names` (dotted, as `named_modules` names it) replaced by `convert(layer)`;
    returns how many."""
    for name in names:
        release_freed_memory()
        parent, _, child = name.rpartition(".")
        module = root.get_submodule(parent)
        setattr(module, child, convert(getattr(module, child)))
    release_freed_memory()
    return len(names)
