"""The CPU as the kernel describes it (/proc/cpuinfo): what a speed record is keyed by and a benchmark reports."""

from pathlib import Path

__all__ = ["cpuinfo_field"]

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_field(name: str) -> str | None:
    """The first `name: value` of /proc/cpuinfo (e.g. "model name", "flags"); None where it has none or there is no
    such file (not Linux) or it cannot be read."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.split(":", 1)[0].strip() == name), None)
