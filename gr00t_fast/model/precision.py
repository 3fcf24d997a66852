"""`dtype="auto"`: the precision the network runs in, chosen where it is loaded, with the reason why.

On CUDA it is bfloat16 (NVIDIA's own default for N1.5). On a CPU it is bfloat16 only where the CPU has bf16 units
(AMX tiles or AVX512-BF16, as torch reports them) *and* bf16 is faster for this checkpoint, timed on the model
itself right after loading: a small checkpoint is overhead-bound, and casts can make bf16 slower than float32 there
even on AMX. Everywhere else float32, the exact path. Deciding holds float32 and bfloat16 copies of the weights for
the few timed calls (1.5x the float32 weights), never two float32 copies.

`GR00T_FAST_AUTO_DTYPE=float32|bfloat16` pins the choice (reproducible runs; the test suite pins float32).
"""

import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from gr00t_fast.model.inputs import example_inputs

__all__ = ["AUTO_DTYPE_ENV", "Precision", "bf16_units", "choose_cpu_dtype"]

AUTO_DTYPE_ENV = "GR00T_FAST_AUTO_DTYPE"
PINNABLE = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ROUNDS = 3  # timed calls per dtype, alternating, after one cold call each


@dataclass(frozen=True)
class Precision:
    """What the network runs in (`dtype`), what was asked for (`requested`: "auto", "float32", ...) and why."""

    dtype: torch.dtype
    requested: str
    reason: str
    float32_ms: float | None = None  # the timed calls behind an auto choice on a CPU with bf16 units
    bfloat16_ms: float | None = None
    quantization: dict | None = None  # `--quantize`: its mode and `quantize_linears`' layer counts

    def as_dict(self) -> dict:
        return {**asdict(self), "dtype": str(self.dtype).removeprefix("torch.")}

    def quantized(self) -> str:
        """What `--quantize` converted, "" when it was not asked for, e.g. "int8 matmuls in 0 of 43 layers (37 too
        small to pay on this CPU stay float32)"."""
        if self.quantization is None:
            return ""
        counts = {k: v for k, v in self.quantization.items() if k != "mode"}
        text = f"{self.quantization['mode']} matmuls in {counts['converted']} of {sum(counts.values())} layers"
        return text + (f" ({counts['slow_on_cpu']} too small to pay on this CPU stay "
                       f"{str(self.dtype).removeprefix('torch.')})" if counts.get("slow_on_cpu") else "")

    def __str__(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        text = name if self.requested != "auto" else f"{name} (auto: {self.reason})"
        return f"{text}, {self.quantized()}" if self.quantization is not None else text


def bf16_units() -> str | None:
    """The CPU's bf16 matrix/vector units as torch sees them ("AMX", "AVX512-BF16"), None when it has neither (there
    bf16 matmuls are emulated and several times slower than float32)."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


def _floating_tensors(model: nn.Module) -> list[tuple[dict, str, torch.Tensor]]:
    """Every floating-point parameter and buffer of `model`: (the dict holding it, its name, the tensor)."""
    return [(tensors, name, tensor) for module in model.modules() for tensors in (module._parameters, module._buffers)
            for name, tensor in tensors.items() if tensor is not None and tensor.is_floating_point()]


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    cast = tensor.detach().to(dtype)
    return nn.Parameter(cast, requires_grad=False) if isinstance(tensor, nn.Parameter) else cast


def _use(model: nn.Module, tensors: list[tuple[dict, str, torch.Tensor]]) -> None:
    """Put `tensors` (from `_floating_tensors`, or casts of them) in place."""
    for holder, name, tensor in tensors:
        holder[name] = tensor
    model.action_head.step_table_cache.clear()  # computed in the old dtype


@torch.inference_mode()
def _race(model: nn.Module, weights: dict[torch.dtype, list]) -> dict[torch.dtype, float]:
    """Median ms of a call per dtype, calls alternating between the weight sets (a busy machine slows both alike)
    after one cold call each; `model` is left holding the last set."""
    times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in weights}
    examples = {dtype: example_inputs(model.config, device=model.device, dtype=dtype) for dtype in weights}
    for round_ in range(ROUNDS + 1):
        for dtype, tensors in weights.items():
            _use(model, tensors)
            inputs, noise = examples[dtype]
            start = time.perf_counter()
            model(inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state, inputs.embodiment_id,
                  noise, model.config.num_inference_timesteps)
            if round_:
                times[dtype].append((time.perf_counter() - start) * 1e3)
    return {dtype: statistics.median(ms) for dtype, ms in times.items()}


def choose_cpu_dtype(model: nn.Module) -> Precision:
    """Keep `model` (float32, on a CPU) in float32 or cast it to bfloat16, whichever `dtype="auto"` picks."""
    pinned = os.environ.get(AUTO_DTYPE_ENV)
    if pinned:
        if pinned not in PINNABLE:
            raise ValueError(f"{AUTO_DTYPE_ENV}={pinned!r}: expected one of {', '.join(PINNABLE)}")
        _use(model, [(holder, name, _cast(t, PINNABLE[pinned])) for holder, name, t in _floating_tensors(model)])
        return Precision(PINNABLE[pinned], "auto", f"pinned by {AUTO_DTYPE_ENV}")
    units = bf16_units()
    if units is None:
        return Precision(torch.float32, "auto", f"this CPU has no AMX or AVX512-BF16 (torch capability "
                                                f"{torch.backends.cpu.get_cpu_capability()}): bf16 would be emulated")
    fp32 = _floating_tensors(model)
    weights = {torch.float32: fp32, torch.bfloat16: [(h, n, _cast(t, torch.bfloat16)) for h, n, t in fp32]}
    ms = _race(model, weights)
    faster = min(ms, key=ms.get)
    _use(model, weights.pop(faster))
    weights.clear()  # the other copy is freed here
    ratio = max(ms.values()) / min(ms.values())
    reason = (f"{units}: bf16 {ratio:.2f}x faster than float32 on this checkpoint" if faster == torch.bfloat16 else
              f"{units}, but float32 {ratio:.2f}x faster than bf16 on this checkpoint")
    return Precision(faster, "auto", reason, ms[torch.float32], ms[torch.bfloat16])
