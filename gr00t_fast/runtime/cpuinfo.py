"""The CPU as the kernel describes it (/proc/cpuinfo): what a speed record is keyed by and a benchmark reports."""

import platform
from pathlib import Path

__all__ = ["CPU_FLAGS", "cpu_record", "cpuinfo_field", "cpuinfo_fields"]

CPUINFO = Path("/proc/cpuinfo")
CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")  # bf16 / int8 units


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


def cpu_record() -> dict[str, str | dict[str, bool]]:
    """The CPU a speed figure ran on, as a result file records it: its model name ("cpu") and whether it has each of
    the bf16 / int8 units in `CPU_FLAGS` ("cpu_flags"; all False where /proc/cpuinfo cannot be read)."""
    name, flags = cpuinfo_fields("model name", "flags")
    present = set((flags or "").split())
    return {"cpu": name or platform.processor(), "cpu_flags": {flag: flag in present for flag in CPU_FLAGS}}
