"""gr00t-fast: fast in-process inference for NVIDIA GR00T N1.5.

The public names (each package's `__all__` lists its own; docs/architecture.md lists them all):

    from gr00t_fast import load_policy, create_policy, Gr00tPolicy, Policy, PolicyConfig, RtcRequest, PolicyClient

Names resolve on first use, so that `import gr00t_fast` stays cheap for the command line and the robot tools.
"""

import importlib
from typing import Any

from gr00t_fast import moved

__version__ = "0.1.0"

_HOMES = {
    "load_policy": "gr00t_fast.loading",
    "create_policy": "gr00t_fast.loading",
    "load_model": "gr00t_fast.model",
    "Gr00tPolicy": "gr00t_fast.policy",
    "Policy": "gr00t_fast.policy",
    "PolicyConfig": "gr00t_fast.policy",
    "RtcRequest": "gr00t_fast.model",
    "PolicyClient": "gr00t_fast.serve",
    "PolicyServer": "gr00t_fast.serve",
}
__all__ = ["__version__", *_HOMES]

moved.install()


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
