"""Names a package resolves on first use (`lazy_names`): `import gr00t_fast`, `gr00t_fast.policy` and
`gr00t_fast.runtime` stay cheap, each public name importing its module the first time it is read."""

import importlib
from typing import Any, Callable

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: each name of `homes` read from its module (name -> the module's path
    below `package`, "loading" for `gr00t_fast.loading`) when it is first asked for; AttributeError for any other."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
