"""gr00t-fast: fast in-process inference for NVIDIA GR00T N1.5.

The public names (each package's `__all__` lists its own; docs/architecture.md lists them all):

    from gr00t_fast import load_policy, create_policy, Gr00tPolicy, Policy, PolicyConfig, RtcRequest, PolicyClient

Names resolve on first use, so that `import gr00t_fast` stays cheap for the command line and the robot tools.
"""

from gr00t_fast import moved
from gr00t_fast.runtime.lazy import lazy_names

__version__ = "0.1.0"

_HOMES = {
    "load_policy": "loading",
    "create_policy": "loading",
    "load_model": "model",
    "Gr00tPolicy": "policy",
    "Policy": "policy",
    "PolicyConfig": "policy",
    "RtcRequest": "model",
    "PolicyClient": "serve",
    "PolicyServer": "serve",
}
__all__ = ["__version__", *_HOMES]

moved.install()

__getattr__ = lazy_names(__name__, _HOMES)
