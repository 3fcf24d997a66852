"""Whether bf16 matmuls pay on this CPU: the bf16 units torch reports do not say it alone.

AMX tiles multiply bf16 several times faster than float32, and so does AVX512-BF16 on the AMD EPYCs this project
was measured on (a 320x2048x2048 product about 2.4x float32's rate, 2 threads). An Intel Xeon with AVX512-BF16 and no
AMX ran the same product in bf16 at 168 GFLOP/s against float32's 287. Its dot-product instruction does twice an FMA's
work at about half an FMA's rate, and the conversions come on top. There the full-size default in bf16 ran at 0.91x
NVIDIA's fp32 where float32 ran at 1.23x (benchmarks/history.md, 2026-11-26). So on a CPU with AVX512-BF16 and no
AMX, the first load times that product (`PROBE`) in both dtypes and keeps what it measured in the cache folder
(`bf16_rates`). bf16 is timed as the eager path runs it (oneDNN-packed, `gr00t_fast.model.packed`), float32 as
`F.linear`, alternating, the fastest of `REPS` each (well under a second). The record is keyed by the CPU (its model
name and flags) and torch's version, so every later load on this machine reads the same verdict. bf16 pays where its
rate is at least `MIN_SPEEDUP` x float32's (measured 0.59x and about 2.4x: far from it either way). An unwritable
cache only costs the probe again at the next load; an unreadable record is measured again.
"""

import functools
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gr00t_fast.runtime.atomic import write_atomic
from gr00t_fast.runtime.cache import cache_dir

__all__ = ["Bf16Rates", "MIN_SPEEDUP", "PROBE", "bf16_rates", "probe_rates"]

PROBE = (320, 2048, 2048)  # (rows, inner, columns): a full-size LLM projection over one camera's prompt
REPS = 5
MIN_SPEEDUP = 1.25  # bf16 pays from this many times float32's rate


@dataclass(frozen=True)
class Bf16Rates:
    """`PROBE`'s rate in bf16 and float32 on this CPU, GFLOP/s."""

    bf16_gflops: float
    float32_gflops: float

    @property
    def pays(self) -> bool:
        return self.bf16_gflops >= MIN_SPEEDUP * self.float32_gflops

    def __str__(self) -> str:
        return f"its bf16 matmuls measured {self.bf16_gflops:.0f} GFLOP/s against float32's {self.float32_gflops:.0f}"


def probe_rates(reps: int = REPS) -> Bf16Rates:
    """`PROBE` timed in both dtypes with the calling thread's torch threads, alternating, the fastest of `reps`."""
    from gr00t_fast.model.packed import PackedLinear

    m, k, n = PROBE
    x = torch.randn(m, k)
    weight = torch.randn(n, k) / k**0.5
    packed, x16 = PackedLinear(torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16)), x.to(torch.bfloat16)
    calls = {"bf16": lambda: packed(x16), "float32": lambda: F.linear(x, weight)}
    best = dict.fromkeys(calls, float("inf"))
    with torch.inference_mode():
        for rep in range(reps + 1):  # the first round warms both up
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start) if rep else best[name]
    return Bf16Rates(*(2 * m * k * n / best[name] / 1e9 for name in ("bf16", "float32")))


def _record_path() -> Path:
    """The record of this CPU and torch in the cache folder."""
    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
        cpu = "\n".join(dict.fromkeys(lines)) or cpu
    except OSError:
        pass
    key = hashlib.sha256(f"{cpu}\n{torch.__version__}".encode()).hexdigest()[:16]
    return cache_dir() / "cpu" / f"bf16_rates_{key}.json"


@functools.cache
def bf16_rates() -> Bf16Rates:
    """This CPU's `Bf16Rates`, measured once per machine (and torch) and read from the cache folder after."""
    path = _record_path()
    try:
        return Bf16Rates(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # none yet, or one that is not a record: measured (again)
        pass
    rates = probe_rates()
    try:
        write_atomic(path, json.dumps(asdict(rates)).encode())
    except OSError:
        pass
    return rates
