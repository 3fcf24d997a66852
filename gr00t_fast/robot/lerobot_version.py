"""Which LeRobot runs on which Python, and one line saying why the installed one does not import.

LeRobot 0.5.0 and later need Python >= 3.12 (0.6.x: GR00T N1.5 removed from LeRobot itself, gr00t-fast still runs
it); 0.4.x runs on 3.10 and 3.11. gr00t-fast drives the SO follower through 0.4.3-0.4.4 (`lerobot.robots.
so_follower`), 0.4.0-0.4.2 (`so100_follower` / `so101_follower`) and 0.5-0.6 (`so_follower` again).
"""

from __future__ import annotations

import importlib.metadata
import sys

# The newest LeRobot release tested with gr00t-fast per Python; the lerobot extra's environment markers pick the
# same (setup.cfg).
LEROBOT_FOR_PYTHON = {(3, 10): "0.4.4", (3, 11): "0.4.4", (3, 12): "0.6.1", (3, 13): "0.6.1"}


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def install_advice() -> str:
    """What to install on this Python: gr00t-fast's own command, which keeps the installed torch (LeRobot's pins
    would replace it)."""
    release = LEROBOT_FOR_PYTHON.get(sys.version_info[:2], "0.6.1" if sys.version_info >= (3, 12) else "0.4.4")
    return (f"gr00t-fast install-lerobot (LeRobot {release} and its requirements beside your torch; --dry-run "
            "prints the pip commands)")


def installed_lerobot() -> str | None:
    try:
        return importlib.metadata.version("lerobot")
    except importlib.metadata.PackageNotFoundError:
        return None


def requires_python(version: str | None) -> str | None:
    """The installed LeRobot's declared Requires-Python, when this Python does not satisfy it."""
    if version is None:
        return None
    spec = importlib.metadata.metadata("lerobot").get("Requires-Python") or ""
    try:
        from packaging.specifiers import SpecifierSet

        return None if not spec or SpecifierSet(spec).contains(python_version()) else spec
    except ImportError:  # packaging is absent: the Python check is not made
        return None


def lerobot_problem(error: BaseException | None = None) -> str:
    """One line: LeRobot's version (or its absence), this Python, what went wrong and what to install."""
    version = installed_lerobot()
    where = f"Python {python_version()}"
    if version is None:
        return f"the real SO-100/SO-101 follower needs LeRobot, which is not installed for {where}: {install_advice()}"
    needs = requires_python(version)
    why = " ".join(f"{type(error).__name__}: {error}".split()) if error is not None else "no SO follower module"
    if needs:
        return (f"LeRobot {version} needs Python {needs}, this is {where} ({why}): {install_advice()}")
    return f"LeRobot {version} does not work with gr00t-fast on {where} ({why}): {install_advice()}"


__all__ = ["LEROBOT_FOR_PYTHON", "install_advice", "installed_lerobot", "lerobot_problem"]
