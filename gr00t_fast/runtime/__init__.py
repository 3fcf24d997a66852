"""Process-level concerns shared by every layer: the one torch thread every PyTorch call runs on
(`torch_thread`), its CPU threads on a shared machine (`threads`), heap trimming (`heap`), whole-or-absent writes (`atomic`), telling a Ctrl-C apart from an error (`interrupt`) and the cache directory
(`cache`) and progress lines for long work (`progress`). Nothing here imports another gr00t-fast package.

(`torch_thread`, the decorator, is `gr00t_fast.runtime.torch_thread.torch_thread`: the package attribute is the module.)
Names resolve on first use, so that `gr00t_fast.runtime.interrupt` (the robot layer's) does not import torch."""

import importlib
from typing import Any

_HOMES = {
    "cache_dir": "cache", "checkpoint_fingerprint": "cache", "keep_freed_memory": "heap", "release_freed_memory": "heap",
    "raised_by_interrupt": "interrupt", "exit_if_busy": "torch_thread", "on_torch_thread": "torch_thread",
    "run_on_torch_thread": "torch_thread", "use_device": "torch_thread", "cpu_threads": "threads",
    "usable_cpus": "threads", "staged": "atomic", "write_atomic": "atomic",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
