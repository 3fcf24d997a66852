"""The CPU as the kernel describes it (/proc/cpuinfo): what a speed record is keyed by and a benchmark reports."""

from pathlib import Path

__all__ = ["cpuinfo_field", "cpuinfo_fields"]

CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_field(name: str) -> str | None:
    """The first `name: value` of /proc/cpuinfo (e.g. "model name", "flags"); None where it has none or there is no
    such file (not Linux) or it cannot be read."""
    return cpuinfo_fields(name)[0]


def cpuinfo_fields(*names: str) -> list[str | None]:
    """`cpuinfo_field` of each of `names`, from one read of /proc/cpuinfo."""
    try:
        lines = [line.split(":", 1) for line in CPUINFO.read_text().splitlines()]
    except OSError:
        return [None] * len(names)
    return [next((value.strip() for key, *rest in lines for value in rest if key.strip() == name), None)
            for name in names]
