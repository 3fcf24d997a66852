"""Whether bf16 matmuls pay on this CPU: the bf16 units torch reports do not say it alone.

AMX tiles multiply bf16 several times faster than float32, and so does AVX512-BF16 on the AMD EPYCs this project was
measured on (a 320x2048x2048 product at 2.1-3.0x float32's rate, 2 threads). An Intel Xeon with AVX512-BF16 and no
AMX ran the same product in bf16 at 168 GFLOP/s against float32's 287 (why was not looked into). There the full-size
default in bf16 ran at 0.91x NVIDIA's fp32 where float32 ran at 1.23x (benchmarks/history.md, 2026-11-26). So on a
CPU with AVX512-BF16 and no AMX, the first load times that product (`PROBE`) in both dtypes and keeps what it
measured in the cache folder (`bf16_rates`). bf16 is timed as the eager path would run it (oneDNN-packed,
`gr00t_fast.model.packed`, where oneDNN packs it), float32 as `F.linear`, alternating, the fastest of `REPS` each
(well under a second), on inputs of their own generator (the process's random state is left as it was). The record
is keyed by the CPU (its model name and flags), torch's version, the instruction-set caps in the environment
(`ISA_CAPS`), the thread count and the probe itself, so every later load on this machine (at that thread count)
reads the same verdict; one process measures at a time, the others read what it wrote. bf16 pays where its rate is
at least `MIN_SPEEDUP` x float32's (measured 0.59x and 2.1-3.0x: far from it either way). An unwritable cache only
costs the probe again at the next load; a record that is not two finite positive rates is measured again.
"""

import functools
import hashlib
import json
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from gr00t_fast.runtime.atomic import write_atomic
from gr00t_fast.runtime.cache import cache_dir, locked
from gr00t_fast.runtime.cpuinfo import cpuinfo_fields

__all__ = ["Bf16Rates", "ISA_CAPS", "MIN_SPEEDUP", "PROBE", "bf16_rates", "fastest_s", "probe_rates"]

PROBE = (320, 2048, 2048)  # (rows, inner, columns): a full-size LLM projection over one camera's prompt
REPS = 5
VERSION = 1  # of the probe and its record: a changed probe measures again
MIN_SPEEDUP = 1.25  # bf16 pays from this many times float32's rate
MAX_GFLOPS = 1e7  # a rate above this is not a measurement of a CPU (10 PFLOP/s)
# the variables that cap the instruction sets the libraries' kernels use (ATen's, oneDNN's, OpenVINO's, MKL's)
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OV_CPU_MAX_ISA",
            "MKL_ENABLE_INSTRUCTIONS")
_measuring = threading.Lock()


@dataclass(frozen=True)
class Bf16Rates:
    """`PROBE`'s rate in bf16 and float32 on this CPU, GFLOP/s: finite and positive, or ValueError."""

    bf16_gflops: float
    float32_gflops: float

    def __post_init__(self) -> None:
        for rate in (self.bf16_gflops, self.float32_gflops):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < MAX_GFLOPS:
                raise ValueError(f"a rate of {rate!r} GFLOP/s is not a measurement")  # NaN fails the comparison

    @property
    def pays(self) -> bool:
        return self.bf16_gflops >= MIN_SPEEDUP * self.float32_gflops

    def __str__(self) -> str:
        return f"its bf16 matmuls measured {self.bf16_gflops:.0f} GFLOP/s against float32's {self.float32_gflops:.0f}"


def probe_rates(reps: int = REPS) -> Bf16Rates:
    """`PROBE` timed in both dtypes with the calling thread's torch threads, alternating, the fastest of `reps`."""
    from gr00t_fast.model.packed import PackedLinear  # `packed` imports `quantize`, which asks this module

    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    m, k, n = PROBE
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator) / k**0.5
    x16, weight16 = x.to(torch.bfloat16), weight.to(torch.bfloat16)
    bf16 = lambda: F.linear(x16, weight16)  # noqa: E731 - where oneDNN cannot pack it
    if torch.backends.mkldnn.is_available():  # the eager path's own GEMM where bf16 pays (`packed.packing_pays`)
        try:  # oneDNN capped below AVX-512 (ONEDNN_MAX_CPU_ISA) may refuse packed bf16
            packed = PackedLinear.from_weight(weight16)
            packed(x16)
            bf16 = lambda: packed(x16)  # noqa: E731
        except RuntimeError:
            pass
    best = fastest_s({"bf16": bf16, "float32": lambda: F.linear(x, weight)}, reps)
    return Bf16Rates(*(2 * m * k * n / best[name] / 1e9 for name in ("bf16", "float32")))


def fastest_s(calls: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Each call's fastest of `reps` in seconds, the calls alternating, after a first round that warms them up (under
    `inference_mode`): a probe's timing."""
    best = dict.fromkeys(calls, math.inf)
    with torch.inference_mode():
        for rep in range(reps + 1):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if rep:
                    best[name] = min(best[name], time.perf_counter() - start)
    return best


def _record_path() -> Path:
    """The record of this CPU, torch, instruction-set caps, thread count and probe in the cache folder."""
    cpu = "\n".join(value for value in cpuinfo_fields("model name", "flags") if value)
    caps = [f"{name}={os.environ.get(name, '')}" for name in ISA_CAPS]
    probe = f"probe {VERSION}: {PROBE} x {REPS}, {torch.get_num_threads()} threads"
    key = "\n".join([cpu or platform.processor() or platform.machine(), torch.__version__, *caps, probe])
    return cache_dir() / "cpu" / f"bf16_rates_{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read(path: Path) -> Bf16Rates | None:
    """The record at `path`, None where there is none or it is not one."""
    try:
        return Bf16Rates(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, RecursionError):
        return None


@functools.cache
def bf16_rates() -> Bf16Rates:
    """This CPU's `Bf16Rates`, measured once per machine (torch, caps) and read from the cache folder after."""
    with _measuring:  # functools.cache does not keep two threads from measuring at once
        try:
            path = _record_path()
        except RuntimeError:  # no home folder to put the cache in: measured at each process's first ask
            return probe_rates()
        rates = _read(path)
        if rates is not None:
            return rates
        try:
            with locked(path):  # another process measuring now: its record is read once it is written
                rates = _read(path)
                if rates is None:
                    rates = probe_rates()
                    write_atomic(path, json.dumps(asdict(rates)).encode())
        except OSError:  # an unwritable cache: measured again at the next load
            rates = rates or probe_rates()
        return rates
