"""Module paths of earlier releases, kept importable for one release: importing one warns and gives the module at
its new path (the same module object, so attributes set on one are seen through the other).

Installed by `import gr00t_fast`, which every `gr00t_fast.*` import runs first. `gr00t_fast.runtime` is the one path
that could not be kept: it named the backend contract (now `gr00t_fast.backends.base`) and now names the package of
process-level concerns.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install"]

# old module path -> new module path; a moved package's submodules follow it (gr00t_fast.bench.cli too)
MOVED = {
    "gr00t_fast.bench": "gr00t_fast.dev.bench",
    "gr00t_fast.cache": "gr00t_fast.runtime.cache",
    "gr00t_fast.control.adapter": "gr00t_fast.policy.adapter",
    "gr00t_fast.data_config": "gr00t_fast.policy.data_config",
    "gr00t_fast.eagle_assets": "gr00t_fast.model.eagle_assets",
    "gr00t_fast.interrupt": "gr00t_fast.runtime.interrupt",
    "gr00t_fast.make_checkpoint": "gr00t_fast.model.random_checkpoint",
    "gr00t_fast.metadata": "gr00t_fast.policy.metadata",
    "gr00t_fast.policy.heap": "gr00t_fast.runtime.heap",
    "gr00t_fast.policy.loading": "gr00t_fast.loading",
    "gr00t_fast.policy.tokenizer": "gr00t_fast.model.tokenizer",
    "gr00t_fast.policy.torch_thread": "gr00t_fast.runtime.torch_thread",
    "gr00t_fast.processor": "gr00t_fast.policy.processor",
    "gr00t_fast.runner": "gr00t_fast.control.run",
    "gr00t_fast.telemetry": "gr00t_fast.control.telemetry",
    "gr00t_fast.tokenizer": "gr00t_fast.model.tokenizer",
    "gr00t_fast.torch_thread": "gr00t_fast.runtime.torch_thread",
}


def new_path(name: str) -> str | None:
    """Where the module once at `name` lives now, or None."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the module at its new one, with a DeprecationWarning naming both."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if new_path(name) else None

    def create_module(self, spec):
        new = new_path(spec.name)
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:  # the module at the new path is already executed
        pass


def install() -> None:
    """First in line, so that a submodule of a moved package (gr00t_fast.bench.cli) is the module at the new path,
    not a second copy that the path finder would load under the old name."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
