"""gr00t-fast: fast in-process inference for NVIDIA GR00T N1.5."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_policy", "load_model", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import gr00t_fast` stays cheap for the CLI and the robot tools.
    if name == "load_policy":
        from gr00t_fast.policy.loading import load_policy

        return load_policy
    if name == "load_model":
        from gr00t_fast.model import load_model

        return load_model
    raise AttributeError(name)
