"""`dtype="auto"`: the precision the network runs in, chosen by a rule before its weights are read, the same at
every load, with the reason why.

On CUDA it is bfloat16 (NVIDIA's own default for N1.5). On a CPU it is bfloat16 where the CPU has bf16 units that
pay (AMX tiles, or AVX512-BF16 where this machine measured bf16 matmuls at 1.25x float32's rate or more, once, then
read from the cache: `gr00t_fast.model.bf16_speed`; an Intel Xeon's AVX512-BF16 without AMX ran them at 0.59x) and
the checkpoint has at least `BF16_MIN_PARAMETERS` parameters; everywhere else float32, the exact path. Measured on
AVX512-BF16 (benchmarks/history.md, "Packed bf16 weights"; current ratios: benchmarks/README.md, "Which path is
fastest on my CPU?"): the tiny checkpoints (about 1-2M parameters) run faster in float32, their calls are overhead-
bound and the casts cost more than the matmuls save; the 48M checkpoint runs 2.2x faster in bf16, full size about
3x. An earlier version timed both dtypes at every load: the choice then moved with the machine's load (24 float32
and 8 bfloat16 loads of one checkpoint in an afternoon), held two copies of the weights, and cost 20 s a load at
full size. Now the dtype is known before the first weight is read, so the weights are read straight into it; the one
probe a machine with AVX512-BF16 and no AMX runs (one matmul shape, timed a few times, for a checkpoint of 10M
parameters or more) is kept for every later load.

With `--quantize int8` on a CPU it is float32 whatever the CPU (unless pinned): the int8 matmuls rescale into the
model's dtype, and in bfloat16 the rest of the network adds its own rounding to theirs (48M, calibrated on 8
observations: the largest action difference from float32 3.19 in bfloat16 against 2.00 in float32, NVIDIA's own bf16
2.49; benchmarks/history.md). The layers int8 keeps out still run in bfloat16 where the CPU's bf16 units
pay (`gr00t_fast.model.quantize.kept_layers`).

`GR00T_FAST_AUTO_DTYPE=float32|bfloat16` pins the choice (the test suite pins float32).
"""

import os
from dataclasses import asdict, dataclass

import torch

from gr00t_fast.model.bf16_speed import bf16_rates
from gr00t_fast.model.quantize import (CPU_INT8_MIN_MACS, CPU_INT8_MIN_WIDTH, INT8_LAYER_MIN_SPEEDUP, MIN_ROWS, MODES,
                                      VERDICTS, bf16_flags, bf16_units)

__all__ = ["AUTO_DTYPE_ENV", "BF16_MIN_PARAMETERS", "Precision", "auto_cpu_precision", "bf16_units"]

AUTO_DTYPE_ENV = "GR00T_FAST_AUTO_DTYPE"
PINNABLE = {"float32": torch.float32, "bfloat16": torch.bfloat16}
BF16_MIN_PARAMETERS = 10_000_000  # below: float32 on a CPU even with bf16 units (overhead-bound calls)


@dataclass(frozen=True)
class Precision:
    """What the network runs in (`dtype`), what was asked for (`requested`: "auto", "float32", ...) and why."""

    dtype: torch.dtype
    requested: str
    reason: str
    quantization: dict | None = None  # `--quantize`: its mode and `quantize_linears`' layer counts
    packed_layers: int = 0  # Linear layers the eager backend runs with oneDNN-packed weights (`gr00t_fast.model.packed`)
    compiled_blocks: int = 0  # transformer blocks the eager backend runs compiled (`gr00t_fast.backends`)

    def as_dict(self) -> dict:
        return {**asdict(self), "dtype": str(self.dtype).removeprefix("torch.")}

    def quantized(self) -> str:
        """What `--quantize` converted, on which engine, "" when it was not asked for, e.g. "int8 matmuls in 120 of
        160 layers on onednn: AVX512-VNNI, ... (6 smoothed for outlier channels; 37 stay float32 where int8 does not pay
        on this CPU: ...)": every layer not converted is counted in one note, by why it stays."""
        if self.quantization is None:
            return ""
        q = self.quantization
        counts = {k: q.get(k, 0) for k in VERDICTS}
        name = str(self.dtype).removeprefix("torch.")
        text = f"{q['mode']} matmuls in {counts['converted']} of {sum(counts.values())} layers" + \
            (f" on {q['engine']}" if q.get("engine") else "")
        if q.get("observations"):
            notes = [f"activations measured on {q['observations']} of your observations"]
        elif q.get("synthetic") and counts["converted"]:  # a trained model's own frames fit it better: said so
            notes = [f"activations measured on {q['synthetic']} synthetic scenes (--calibration: on your observations)"]
        elif q["mode"] == "int8" and counts["converted"]:  # what moves int8's actions most: said where it can be fixed
            notes = ["the weights at their nearest levels: --calibration fits them to your observations"]
        else:
            notes = []
        notes += [f"the weights of {q['fitted']} layers rounded to fit them (GPTQ)"] if q.get("fitted") else []
        notes += [f"{q['smoothed']} smoothed for outlier channels"] if q.get("smoothed") else []
        notes += [f"{q['prepacked']} with their weights prepacked for oneDNN"] if q.get("prepacked") else []
        notes += [f"{counts['too_lossy']} stay {q.get('kept_in', name)}: their own int8 error over "
                  f"{q.get('max_layer_error', 0):.0%}"] if counts["too_lossy"] else []
        notes += [f"its layers {q['cache']}"] if q.get("cache") else []
        timed = f", or timed under {INT8_LAYER_MIN_SPEEDUP:g}x float32's speed at their size on FBGEMM" \
            if q.get("layers_timed") else ""  # `int8_pays_on_cpu`
        notes += [f"{counts['slow_on_cpu']} stay {name} where int8 does not pay on this CPU: narrower than "
                  f"{CPU_INT8_MIN_WIDTH} or under {CPU_INT8_MIN_MACS / 1e6:g}M multiply-adds per call{timed}"] \
            if counts["slow_on_cpu"] else []
        notes += [f"{counts['few_rows']} stay {name}: {MIN_ROWS} rows or fewer per call"] if counts["few_rows"] else []
        notes += [f"{counts['kept']} stay {name}: widths not multiples of {MODES[q['mode']][2]}"] \
            if counts["kept"] else []
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def __str__(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        text = name if self.requested != "auto" else f"{name} (auto: {self.reason})"
        text = f"{text}, {self.quantized()}" if self.quantization is not None else text
        text = f"{text}, oneDNN-packed weights in {self.packed_layers} layers" if self.packed_layers else text
        return f"{text}, its {self.compiled_blocks} transformer blocks compiled" if self.compiled_blocks else text


def auto_cpu_precision(parameters: int, quantize: str | None = None) -> Precision:
    """`dtype="auto"` on a CPU for a network of `parameters` (from its config, before any weight is read) whose
    matmuls `quantize` asks for ("int8", "fp8", None)."""
    pinned = os.environ.get(AUTO_DTYPE_ENV)
    if pinned:
        if pinned not in PINNABLE:
            raise ValueError(f"{AUTO_DTYPE_ENV}={pinned!r}: expected one of {', '.join(PINNABLE)}")
        return Precision(PINNABLE[pinned], "auto", f"pinned by {AUTO_DTYPE_ENV}")
    if quantize == "int8":
        return Precision(torch.float32, "auto", "int8 matmuls rescale into float32: bf16 around them would add its "
                                                "own rounding to theirs")
    flags = bf16_flags()
    if flags is None:
        return Precision(torch.float32, "auto", f"this CPU has no AMX or AVX512-BF16 (torch capability "
                                                f"{torch.backends.cpu.get_cpu_capability()}): bf16 would be emulated")
    size = f"{parameters / 1e6:.1f}M parameters"
    if parameters < BF16_MIN_PARAMETERS:  # decided before any probe: a small checkpoint never waits for one
        return Precision(torch.float32, "auto", f"{flags}, but {size}: below {BF16_MIN_PARAMETERS / 1e6:.0f}M calls "
                                                "are overhead-bound and bf16 does not pay")
    units = bf16_units()
    if units is None:
        return Precision(torch.float32, "auto", f"{flags}, but {bf16_rates()} on this CPU: bf16 does not pay")
    return Precision(torch.bfloat16, "auto", f"{units} and {size} (bf16 pays from {BF16_MIN_PARAMETERS / 1e6:.0f}M)")
