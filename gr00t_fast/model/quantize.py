"""INT8 / FP8 matmuls for the PyTorch backends: Linear layers swapped for `torch._int_mm` / `torch._scaled_mm`.

Weights are quantized once, symmetric with one scale per output channel; activations are quantized per token at run
time (a reduction on the device, no host sync, so the result still compiles and captures in a CUDA graph): int8's
over each token's own range [min, max] in 255 steps with zero on a level (`_range_rows`; a GELU's output, the input
of SigLIP's, the VL self-attention's and the DiT's FF down projections, gets about twice the levels of a symmetric
scale, and a padded channel stays exactly zero; on FBGEMM in 127 steps from its min, `_fbgemm_rows`, below), the
offset added back through each output channel's weight sum
(`QuantizedLinear.level_sums`); fp8's symmetric. Against symmetric int8 activations, on an Intel Xeon's 6 simulated
observations (the largest action difference from float32, its mean): at 48M the means fall on the random and the
outlier checkpoint, with and without `--calibration` (0.66 to 0.55, 0.89 to 0.59; 0.54 to 0.41, 0.80 to 0.46); at
full size it is mixed (without `--calibration` 3.95 (1.14) to 2.84 (0.89), with outliers 3.24 (1.12) to 4.01 (0.97);
with it the largest falls and the means rise, 0.82 to 1.07 and 0.75 to 0.85); a full-size call with its blocks
compiled no slower within its runs' ~5% spread (benchmarks/history.md, "int8 activations over each token's range";
eager and on a GPU not timed). Rounding each weight to its nearest level is what moved the actions most (48M, random
weights, symmetric activations then: the int8 weights alone 4.7 of int8's largest difference from fp32 of 4.9, its
activations alone 1.7; full size 3.2 and 2.6 of 3.8; `benchmarks/int8_error_sources.py`), so int8's weights are
rounded as GPTQ rounds them (`_round_weights`): each column's rounding error carried into the columns not yet
rounded, weighted by the layer's inputs in the sample calls, so that the layer's output moves less on inputs of that
kind. The sample calls are the user's observations (`--calibration`, on an AMD EPYC on 2026-11-26 with symmetric
activations: 48M 2.00 against 4.95; full size 2.89 against 3.89, its load 238 s against 88 s on 2 cores, the float
model read whole), else on a CPU synthetic scenes (`gr00t_fast.backends.pytorch.SYNTHETIC_CALLS`; their figures
there); on a GPU without observations one example call, and `quantize_linears(fit_weights=False)` keeps the nearest
levels.

    int8  int8 x int8 -> int32 (`torch._int_mm`), rescaled into the model dtype. The weight is stored (out, in)
          row-major and handed over as its transpose, a column-major (in, out) operand: the "TN" layout cuBLASLt's
          int8 GEMM is exact with; on CUDA rows are padded to a multiple of 8 above 16 (it refuses <= 16 rows, and
          17 was reported wrong on CUDA 12.1, pytorch#107671). On a CPU with VNNI or AMX the weight is prepacked
          instead (below, "onednn").
    fp8   float8_e4m3fn x float8_e4m3fn with row-wise scales (`torch._scaled_mm`, bias fused), output in the model
          dtype, which on CUDA must be bfloat16 (the only output row-wise scaling has there).

Only the transformer stacks are converted (SigLIP, Qwen3, VL self-attention, DiT): their Linear layers carry
nearly all of the FLOPs. Embeddings, norms, the connector and the per-embodiment encoders/decoder stay as loaded.
Layers whose widths the kernels cannot take (int8: multiples of 8; fp8: multiples of 16) are left as they are, and
so are layers that see at most `MIN_ROWS` rows in a sample call (timestep and AdaLN projections: one row per
sample), where quantizing the activations costs more than the matmul saves. On a CPU, int8 also leaves the layers
of that call too small to pay (`int8_pays_on_cpu`: narrower than 256 or under 4M multiply-adds; every layer of
NVIDIA's tiny checkpoint, whose int8 ran slower than float32): counted as slow_on_cpu.
Both kernels also run on CPU (that is how the tests check them); fp8's speed matters on a GPU only.

int8 on a CPU runs on one of two engines, chosen by the CPU (`int8_engine`; the load line says which and why):
    onednn  oneDNN's u8s8 GEMM where the CPU has VNNI (AVX512-VNNI) or AMX, activations per token: each weight
            of at least `ONEDNN_PACK_MIN_WEIGHT` values prepacked once in oneDNN's blocked layout (`onednn_pack`;
            smaller ones run `torch._int_mm`, faster there), the activations' int8 levels shifted by
            `ONEDNN_ZERO_POINT` into uint8 (oneDNN's fast int8 GEMM is u8 x s8; the zero point takes the shift back
            out, the same int32 sums as `torch._int_mm`'s). `torch._int_mm` reorders its weight into that layout on
            every call: at the DiT's 49 rows the weights' reads bound the GEMM and the reorder doubles them (packed:
            1.19x at 49x1536x6144, 1.34x at 16 rows, 1.02x at 289; a full-size call 1.07x; benchmarks/history.md,
            2026-11-27). The GEMM runs as `onednn_int8_mm`, an op of its own, so that `torch.compile` calls it as it
            is (Inductor lowers oneDNN's int8 linear only for weights frozen into the graph).
    fbgemm  FBGEMM's u8s8 dynamic GEMM (`quantized::linear_dynamic`) on a CPU with AVX2 and no VNNI: there torch's
            `_int_mm` has no fast kernel (4.5 GOP/s against 118 GFLOP/s of f32 matmul on an AMD EPYC Zen 3: 17x
            slower than NVIDIA at full size) and is never chosen. Activations per token in 7 bits (`reduce_range`:
            AVX2's byte-pair adds saturate in 16 bits with 8-bit activations), weights per channel. FBGEMM quantizes
            a call's activations with one scale; each token's own levels 0..127 (`_fbgemm_rows`) are handed to it as
            floats it maps to themselves, so that a token's range is its own (before 2026-11-28 one call per
            sample, its tokens sharing one range: a loud token left the others few levels). Only where it
            pays: a process's first int8 load at each torch thread count times it against the float32 GEMM the model
            would run instead (`fbgemm_rates`) and refuses int8, in one line, where it is under `INT8_MIN_SPEEDUP` x
            float32's rate; and each layer is int8 only where it runs at least `INT8_LAYER_MIN_SPEEDUP` x its float32
            layer at its own size, timed at the load (`int8_pays_on_cpu`; on an AMD EPYC Zen 3 full size's layers
            ran 1.23-1.73x, the 48M checkpoint's 0.45-1.01x: 48M stays float32 there). The GEMM runs as
            `fbgemm_int8_mm`, an op of its own whose weight a tensor names, so that the torch backend's compiled
            transformer blocks call it as it is (`gr00t_fast.backends.regional`; eagerly FBGEMM's op itself runs).
            On an AMD EPYC with AVX2 only (Zen 1: 128-bit units, whose byte multiply-adds give no more
            than its float32 FMAs) it ran 68-73 GOP/s at full size's shapes against oneDNN's packed float32 61-73
            GFLOP/s (`benchmarks/gemm_rates.py`), and a full-size call 1.62x NVIDIA's fp32 (13.3 s) with its largest
            action difference 6.83 on `bench ab`'s observation (NVIDIA's own bf16 there: 2.57, on an Intel Xeon), where
            float32 packed ran 1.58x (13.0 s, a run of its own) at 1.7e-4 (benchmarks/README.md, "AVX2 only"): it is
            refused there. With each token's own range (2026-11-28) the same observation moved by 3.95, 1.60x beside
            float32's 1.59x in one run (benchmarks/README.md, "Within NVIDIA's own bf16 on FBGEMM"). Its 7 bits
            leave 48M's actions over NVIDIA's bf16 in the median call where oneDNN's 8 bits on the same calls are
            within (7-bit activations alone move them about twice as far as 8-bit ones); the ways to 8 bits at one
            GEMM's cost tried (7-bit weights, or weight pairs within 128) were worse on random weights and mixed
            with outliers (benchmarks/history.md, "FBGEMM in 8 bits?"). The size rule,
            `int8_pays_on_cpu`, was measured on oneDNN with VNNI.
`GR00T_FAST_INT8_ENGINE=onednn|fbgemm` pins it (onednn is refused without VNNI or AMX; a pinned fbgemm is not timed).

Outlier channels (trained transformers carry a few input channels 20-100x the rest, LLM.int8(), SmoothQuant) would
take the per-token scale and leave the other channels a few levels: a layer whose inputs have them (a channel's
largest value over `OUTLIER_RATIO` x the median channel's in the sample call) is smoothed as SmoothQuant does
(alpha 0.5): its weight columns are multiplied by s_j = sqrt(amax(x_j) / amax(w_j)) before they are quantized and its
input divided by s_j at run time, the same product with the outliers' range shared between both operands (a channel
quiet in the sample call counts as 1% of the median channel: its s_j stays in range). Then every converted layer's
own error is measured on its inputs in the sample call (the float network's: the relative difference of its output
from the float layer's, on the kept rows its rounding was not fitted to and the largest ones) and a layer above
its bound stays in float (counted as `too_lossy`): the layers whose error does not pay for their speed are found by
measurement, not by hand. The bound is what keeping a layer costs: int8 on a CPU whose bf16 units pay
(`bf16_units`) keeps its layers in bfloat16 (in a float32 model cast to bfloat16: `Bf16Linear`) with
`MAX_LAYER_ERROR_BF16`, 2%; elsewhere they stay in the model's dtype with `MAX_LAYER_ERROR`, 5% (`kept_layers`; on a
GPU not measured). At full size 2% keeps the 12 LLM
`down_proj` layers (2048x6144, their own int8 error 2.4-3.6% on random weights and with outliers; every other layer
under 2%): in float32 they cost 1.19x a call, in bfloat16 1.05x (AVX512-BF16, 2 threads; benchmarks/history.md).

FBGEMM's one call for a whole batch keeps each token to itself too (`_fbgemm_rows`): a sample's actions never depend
on its batch mates.
"""

import functools
import itertools
import os
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gr00t_fast.model.bf16_speed import PROBE, bf16_rates, fastest_s
from gr00t_fast.model.deferred import DeferredWeights
from gr00t_fast.model.swap import replace_layers

__all__ = ["Bf16Linear", "CPU_INT8_MIN_MACS", "CPU_INT8_MIN_WIDTH", "FBGEMM_REDUCE_RANGE", "FBGEMM_STEPS", "FIT_ROWS",
           "INT8_ENGINES", "INT8_ENGINE_ENV", "INT8_LAYER_MIN_SPEEDUP", "INT8_MIN_SPEEDUP", "INT8_PROBE",
           "INT8_UNITS", "InputStats", "Int8Engine", "KeptLayers", "MAX_LAYER_ERROR", "MAX_LAYER_ERROR_BF16",
           "MIN_ROWS", "MODES", "ONEDNN_PACK_MIN_WEIGHT", "ONEDNN_ZERO_POINT", "QuantizedLinear", "SampleBatch",
           "VERDICTS", "bf16_flags", "bf16_units", "check_fp8_cuda", "cpu_units", "fbgemm_int8_mm", "fbgemm_rates",
           "input_stats", "int8_engine", "int8_pays_on_cpu", "int8_units", "int_mm_rows", "kept_layers",
           "layer_error", "onednn_int8_mm", "onednn_pack", "onednn_packs", "prompt_linears", "quantize_linears",
           "quantized_weights", "relative_error", "smoothing", "stack_linears", "transformer_blocks",
           "transformer_stacks", "weight_error"]

MODES = {"int8": (torch.int8, 127.0, 8), "fp8": (torch.float8_e4m3fn, 448.0, 16)}  # dtype, largest value, width
MIN_ROWS = 4  # layers that see this many rows or fewer per call stay in float
# int8 on a CPU (oneDNN's VNNI `_int_mm`, 1 thread): the per-token quantization and the rescale cost ~40 us a layer
# plus a share that grows with rows x (in + out); the matmul it shortens grows with rows x in x out. It paid from
# min(in, out) = 256 and 4M multiply-adds (320x256x256 1.35x, 16x512x512 1.3x) and cost below (320x384x96 0.7x,
# 49x256x256 0.85x, every layer of NVIDIA's tiny checkpoint 0.3-0.9x): benchmarks/history.md, "INT8 on a CPU: where
# it pays".
CPU_INT8_MIN_WIDTH = 256
CPU_INT8_MIN_MACS = 4_000_000
INT8_ENGINE_ENV = "GR00T_FAST_INT8_ENGINE"
INT8_ENGINES = ("onednn", "fbgemm")  # on a CPU; CUDA runs `torch._int_mm` (cuBLASLt)
OUTLIER_RATIO = 16.0  # an input channel this many times the median channel's absmax is an outlier: smooth the layer
# (random weights reach 8.4x, in the DiT's feed-forward outputs after GELU; trained transformers 20-100x)
SMOOTH_ALPHA = 0.5  # SmoothQuant's migration strength: half of the range moves into the weights
MAX_LAYER_ERROR = 0.05  # a converted layer whose output moves by more (relative, on the sample call) stays in float
MAX_LAYER_ERROR_BF16 = 0.02  # the same where the layers kept run in bfloat16 (`kept_layers`): they cost less
QUIET_CHANNEL = 0.01  # a channel quieter than this share of the median channel counts as that share when smoothing
# GPTQ's damping of H: this share of its mean diagonal added to the diagonal. Fitted to synthetic scenes, a layer's
# rounding is judged on other inputs (the user's frames): 0.1 holds the error GPTQ carries into directions the scenes
# never took. A layer's weight error on 10 simulated observations' inputs (48M, the mean over layers; plain rounding
# 0.74%): fitted to 8 scenes 0.40% against 0.44% at 0.01 (4 scenes 0.43% and 0.47%); fitted to other observations of
# the same scene 0.24-0.25% either way, and `--calibration`'s actions the same at 48M (benchmarks/history.md). 0.3
# holds the scenes' rows a little better and the same scene's a little worse (`benchmarks/int8_weight_fit.py`;
# benchmarks/history.md, "GPTQ damped 0.1, 8 synthetic scenes"). On a GPU it applies to `--calibration` only.
GPTQ_DAMP = 0.1
GPTQ_BLOCK = 128  # columns rounded one by one before the rest of their chunk is updated at once
GPTQ_CHUNK = 2048  # input channels whose rounding errors are carried among each other (H's diagonal blocks)
# FBGEMM quantizes a call's [min(0, min), max] into 0..127 with `reduce_range` (7 bits: AVX2's 16-bit byte-pair sums
# cannot saturate), so `_fbgemm_rows`' levels 0..127 pass at scale 1: the two go together
FBGEMM_REDUCE_RANGE = True
FBGEMM_STEPS = 127
ONEDNN_ZERO_POINT = 128  # int8 levels (-128..127) + this = the uint8 activations oneDNN's packed GEMM takes
# oneDNN's packed int8 GEMM pays where the weight's reads bound the GEMM (weights past the caches, few rows): 32
# distinct weights at 49 rows, 1536x6144 1.19x `_int_mm`, 1152x4304 at 256 rows 1.07x; small ones cost its fixed
# ~30 us a call (384x384 0.57x; 48M, whose layers are all under 1M values, 0.84x a call packed whole) and 2048x2048 at
# 49 rows ran 0.92x; full size packed above this bound ran as fast as packed whole (1.00x in one process). Scratch,
# Intel Xeon with AVX512-VNNI, 2 threads, 16 distinct weights a shape (benchmarks/history.md, 2026-11-27). Not
# measured on AMX.
ONEDNN_PACK_MIN_WEIGHT = 4_500_000  # in x out
INT8_MIN_SPEEDUP = 1.25  # FBGEMM's int8 GEMM runs where it is at least this many times float32's (bf16's bound too)
# and each layer on FBGEMM where it is at least this many times its float32 layer's rate at its size
# (`int8_pays_on_cpu`): on an AMD EPYC Zen 3 (AVX2, 2 threads) every layer of the 48M checkpoint ran int8 at
# 0.45-1.01x its float32 packed (the call 0.91x float32's), every full-size layer 1.23-1.73x but one (1.50x in all); a
# layer under 1.1x would move the actions for next to no time (benchmarks/history.md, "Zen 3")
INT8_LAYER_MIN_SPEEDUP = 1.1
INT8_PROBE = PROBE  # rows, inner, columns: a full-size LLM projection (bf16's probe too)


@dataclass(frozen=True)
class Int8Engine:
    """The kernel int8 matmuls run on (`name`: "onednn", "fbgemm" or "cuda") and why (`reason`); `pinned`: by
    `INT8_ENGINE_ENV`."""

    name: str
    reason: str
    pinned: bool = False

    @property
    def times_layers(self) -> bool:
        """Whether a load times each layer's int8 against its float32 (`int8_pays_on_cpu`): FBGEMM, not pinned."""
        return self.name == "fbgemm" and not self.pinned

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def cpu_units(checks: dict[str, str]) -> str | None:
    """The first of `checks` (a unit's name -> the `torch.cpu` probe saying the CPU has it) this CPU has, None for
    none (a probe this torch lacks: absent)."""
    return next((unit for unit, probe in checks.items() if getattr(torch.cpu, probe, lambda: False)()), None)


INT8_UNITS = {"AMX": "_is_amx_tile_supported", "AVX512-VNNI": "_is_vnni_supported"}  # `cpu_units`' probes


def int8_units() -> str | None:
    """The CPU's int8 dot-product units as torch sees them ("AMX", "AVX512-VNNI"), None without (there
    `torch._int_mm` has no fast kernel)."""
    return cpu_units(INT8_UNITS)


def onednn_packs(in_features: int, out_features: int) -> bool:
    """Whether a oneDNN int8 layer of this size runs on a prepacked weight (`onednn_pack`): one of at least
    `ONEDNN_PACK_MIN_WEIGHT` values, in a torch built with oneDNN, where this CPU itself has VNNI or AMX (read here,
    not through `int8_units`), which sum u8 x s8 products in int32. Without them oneDNN's u8s8 GEMM adds byte pairs
    in 16 bits, which saturate (255 x 127 x 2 > 32767): there the layer runs `torch._int_mm`, exact on any CPU. The
    two oneDNN ops are torch's internals: a torch without them runs `torch._int_mm` too."""
    return in_features * out_features >= ONEDNN_PACK_MIN_WEIGHT and torch.backends.mkldnn.is_available() \
        and cpu_units(INT8_UNITS) is not None and _has_onednn_int8_ops()


@functools.cache
def _has_onednn_int8_ops() -> bool:
    """Whether this torch runs oneDNN's int8 prepack and GEMM ops as `onednn_pack` and `onednn_int8_mm` call them
    (torch's internals, whose signatures have changed between releases): one 8x16 layer packed and multiplied, its
    sums checked."""
    weight = (torch.arange(128).reshape(8, 16) % 11 - 5).to(torch.int8)
    levels = (torch.arange(32).reshape(2, 16) % 7 - 3).to(torch.int8)
    weight[0, :2], levels[0, :2], levels[1, :2] = 127, -128, 127  # the extremes: uint8 0 and 255
    try:
        out = onednn_int8_mm((levels.int() + ONEDNN_ZERO_POINT).to(torch.uint8), onednn_pack(weight), torch.ones(8),
                             torch.zeros(8, dtype=torch.long))
    except (AttributeError, RuntimeError, TypeError):
        return False
    return torch.equal(out, levels.float() @ weight.float().t())


def bf16_flags() -> str | None:
    """The CPU's bf16 matrix/vector units as torch sees them ("AMX", "AVX512-BF16"), None when it has neither (there
    bf16 matmuls are emulated and several times slower than float32)."""
    return cpu_units({"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"})


def bf16_units() -> str | None:
    """The CPU's bf16 units (`bf16_flags`) where bf16 matmuls pay on it: AMX, or AVX512-BF16 where this machine
    measured bf16 at least `MIN_SPEEDUP` x float32's rate (`gr00t_fast.model.bf16_speed`: once per machine, then read
    from the cache); None elsewhere. What the CPU precision rule, int8's kept layers and packing ask."""
    units = bf16_flags()
    return None if units == "AVX512-BF16" and not bf16_rates().pays else units


def int8_engine(device: torch.device | str = "cpu") -> Int8Engine:
    """The engine `--quantize int8` runs on for a model on `device` (module docstring); ValueError in one line where
    no engine is fast here, or for a pin this CPU cannot run fast."""
    if torch.device(device).type == "cuda":
        return Int8Engine("cuda", "torch._int_mm, cuBLASLt's int8 GEMM")
    units = int8_units()
    fbgemm = "fbgemm" in torch.backends.quantized.supported_engines and \
        getattr(torch.cpu, "_is_avx2_supported", lambda: False)()
    pinned = os.environ.get(INT8_ENGINE_ENV)
    if pinned and pinned not in INT8_ENGINES:
        raise ValueError(f"{INT8_ENGINE_ENV}={pinned!r}: expected one of {', '.join(INT8_ENGINES)}")
    if pinned == "onednn" or (not pinned and units):
        if units is None:
            raise ValueError(f"{INT8_ENGINE_ENV}=onednn: this CPU has no VNNI or AMX, where torch._int_mm has no fast "
                             "kernel (17x slower than NVIDIA's fp32 at full size); unset it to run FBGEMM's")
        return Int8Engine("onednn", f"{units}, oneDNN's int8 GEMM, activations per token"
                          + (f", pinned by {INT8_ENGINE_ENV}" if pinned else ""), pinned=bool(pinned))
    if fbgemm:
        if pinned:
            return Int8Engine("fbgemm", f"pinned by {INT8_ENGINE_ENV}, FBGEMM's u8s8 GEMM, activations per token in "
                                        "7 bits", pinned=True)
        int8, float32 = fbgemm_rates()
        rates = (f"an int8 layer on FBGEMM's u8s8 GEMM {int8:.0f} GOP/s against float32's {float32:.0f} GFLOP/s at "
                 f"{'x'.join(map(str, INT8_PROBE))}, {torch.get_num_threads()} threads")
        if int8 < INT8_MIN_SPEEDUP * float32:
            raise ValueError(f"--quantize int8 does not pay on this CPU (no VNNI or AMX): {rates}; int8 would move "
                             f"the actions for no speed: run without --quantize (or pin {INT8_ENGINE_ENV}=fbgemm)")
        return Int8Engine("fbgemm", f"no VNNI or AMX, where torch._int_mm has no fast kernel; {rates}, activations "
                                    "per token in 7 bits")
    raise ValueError(f"--quantize int8 needs a CPU with VNNI or AMX (oneDNN) or AVX2 (FBGEMM); this one has neither "
                     f"(torch capability {torch.backends.cpu.get_cpu_capability()}): run without --quantize")


def fbgemm_rates(shape: tuple[int, int, int] = INT8_PROBE) -> tuple[float, float]:
    """GOP/s of an int8 layer on FBGEMM (`QuantizedLinear`'s, its activations' levels and rescale included) and
    GFLOP/s of the float32 GEMM a model runs instead on this CPU (oneDNN-packed where float32 packs,
    `gr00t_fast.model.packed`; `F.linear` elsewhere), at `shape` (rows, inner, columns) on the calling thread's torch
    threads: alternating, the fastest of 5 each (about a second at full size's largest layer, its weight made and
    packed included), once per process, shape and thread count, on inputs of their own generator."""
    return _fbgemm_rates_at(torch.get_num_threads(), shape)


@functools.cache
def _fbgemm_rates_at(threads: int, shape: tuple[int, int, int]) -> tuple[float, float]:
    """`fbgemm_rates` measured, cached by the torch thread count it runs at and the shape."""
    from gr00t_fast.model.packed import PackedLinear, float32_packs

    rows, inner, columns = shape
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(rows, inner, generator=generator), torch.randn(columns, inner, generator=generator)
    linear = nn.Linear(inner, columns, bias=False, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=False)
    int8_layer = QuantizedLinear(linear, "int8", "fbgemm")
    calls = {"int8": lambda: int8_layer(x)}
    if float32_packs():
        float32_layer = PackedLinear.from_weight(weight)
        calls["float32"] = lambda: float32_layer(x)
    else:
        calls["float32"] = lambda: F.linear(x, weight)
    best = fastest_s(calls, 5)
    return tuple(2 * rows * inner * columns / best[name] / 1e9 for name in ("int8", "float32"))


def int_mm_rows(n: int) -> int:
    """Rows `torch._int_mm` gets for `n` rows: a multiple of 8, more than 16."""
    return max(24, -(-n // 8) * 8)


def _row_scales(x: torch.Tensor, qmax: float) -> torch.Tensor:
    """Symmetric per-row scales of a float32 2-D tensor, (rows, 1): each row's largest magnitude over `qmax`."""
    if x.is_cuda:
        absmax = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True)
    else:  # the same values; the CPU's inf-norm is a generic reduction, 3-8x slower than abs + amax at these widths
        absmax = x.abs().amax(dim=1, keepdim=True)
    return absmax.clamp(min=1e-12) / qmax


def _quantize_rows(x: torch.Tensor, dtype: torch.dtype, qmax: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization of a 2-D tensor: (values in `dtype`, float32 scales (rows, 1))."""
    x = x.float()
    scale = _row_scales(x, qmax)
    q = x / scale  # within [-qmax, qmax] up to rounding: int8 rounds to at most 127, fp8 (no inf) is clamped
    return (q.round() if dtype == torch.int8 else q.clamp(-qmax, qmax)).to(dtype), scale


def _range_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 activations per row over the row's own range [min, max] in 255 steps: (levels (rows, in; int8),
    float32 scales and offsets (rows, 1)) with x ~ scale * levels + offset. A row's output is then
    scale * (levels @ W) + offset * (the weight's row sums): `QuantizedLinear.level_sums`."""
    x = x.float()  # the scales in float32 whatever the model's dtype
    low = x.amin(dim=1, keepdim=True).clamp(max=0)  # amin + amax: on a CPU 1.7-1.9x abs().amax(), 9-10x aminmax
    scale = (x.amax(dim=1, keepdim=True).clamp(min=0) - low).clamp(min=1e-12) / 255  # the range holds zero:
    zero = -(low / scale).round() - 128  # zero's level, within -128..127; zero exact, as symmetric rounding keeps it
    levels = (x / scale).round_().add_(zero).clamp_(-128, 127)
    return levels.to(torch.int8), scale, -zero * scale


def _fbgemm_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FBGEMM's activations per token: each row of a float32 2-D tensor over its own [min, max] in `FBGEMM_STEPS`
    steps, as float32 levels (rows, in), and float32 scales and offsets (rows, 1), x ~ scale * levels + offset. A row
    that is not constant has a level 0 (its min) and a level 127 (its max, within an ulp of 127 before rounding), so
    FBGEMM's own quantization of a call (`reduce_range`: the call's [min(0, min), max] in 0..127) maps these levels to
    themselves (scale 1, zero point 0), whatever the other rows hold, and its GEMM returns their exact int32 sums times
    each weight row's scale. A constant row's levels are all 0: its offset carries it whole; a range under float32's
    smallest normal number times 127 is widened to it."""
    low = x.amin(dim=1, keepdim=True)
    scale = (x.amax(dim=1, keepdim=True) - low).clamp_(min=FBGEMM_STEPS * torch.finfo(torch.float32).tiny)
    scale = scale.div_(FBGEMM_STEPS)
    # a token with NaN or an overflowing range gets levels 0 (FBGEMM raises on a NaN in its range) and stays NaN
    # through its scale or offset, alone: no batch mate sees it
    return (x - low).div_(scale).round_().clamp_(0, FBGEMM_STEPS).nan_to_num_(0.0), scale, low


def _round_weights(weight: torch.Tensor, rows: torch.Tensor, qmax: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """int8 weights (out, in), their float32 scales (out, 1) as `_quantize_rows` makes them (per output channel,
    absmax / qmax), each column's rounding error carried into the columns not yet rounded as GPTQ does (Frantar et
    al. 2022: weighted by the inverse of H = X^T X of the layer's inputs `rows`, damped by `GPTQ_DAMP` x its mean
    diagonal), so that the layer's output on inputs like `rows` moves less than with each weight at its nearest
    level. The input channels go in chunks of `GPTQ_CHUNK`, each with its own block of H (an error is carried within
    its chunk): a whole H of the widest layers (8192) would cost minutes of a CPU at load. The weights are carried in
    units of their row's step (the levels before rounding). A chunk whose inputs are all zero or not finite, or whose H
    float32 cannot factor: plain rounding. The third value: whether any chunk was fitted."""
    w = weight.detach().float()
    scale = _row_scales(w, qmax)
    z = (w / scale).t().contiguous()  # (in, out): a column of the weight, in its rows' steps, is a contiguous row
    x = rows.to(w.device, torch.float32)
    q = torch.empty_like(z)
    fitted = False
    for first in range(0, z.shape[0], GPTQ_CHUNK):
        chunk, levels = z[first:first + GPTQ_CHUNK], q[first:first + GPTQ_CHUNK]
        u = _inverse_factor(x[:, first:first + GPTQ_CHUNK])
        if u is None:  # no inputs, or none a float32 Cholesky takes
            torch.round(chunk, out=levels).clamp_(-qmax, qmax)
            continue
        fitted = True
        for start in range(0, len(chunk), GPTQ_BLOCK):  # a block's columns one by one, then the rest at once
            end = min(start + GPTQ_BLOCK, len(chunk))
            block, u_block, rounded = chunk[start:end], u[start:end, start:end], levels[start:end]
            errors = torch.empty_like(block)  # each column's rounding error; over U's diagonal once the block is done
            carry = u_block / u_block.diagonal()[:, None]  # how much of column i's error each later column takes
            for i in range(end - start):
                torch.round(block[i], out=rounded[i]).clamp_(-qmax, qmax)
                torch.sub(block[i], rounded[i], out=errors[i])
                block[i + 1:].addr_(carry[i, i + 1:], errors[i], alpha=-1)  # in place: no outer product made
            errors /= u_block.diagonal()[:, None]
            chunk[end:].addmm_(u[start:end, end:].t(), errors, alpha=-1)
    return q.t().contiguous().to(torch.int8), scale, fitted


def _inverse_factor(inputs: torch.Tensor) -> torch.Tensor | None:
    """GPTQ's U: the upper Cholesky factor of H^-1 (H^-1 = U^T U), H = X^T X of `inputs` damped; None where H is zero,
    not finite or does not factor in float32. With J the reversal of H's channels, J H J = L L^T gives U = J L^-1 J:
    one factorization and one triangular solve, where inverting H and factoring H^-1 would take three."""
    h = inputs.t() @ inputs
    damp = GPTQ_DAMP * h.diagonal().mean()
    if not (torch.isfinite(damp) and damp > 0):
        return None
    h.diagonal().add_(damp)
    factor, info = torch.linalg.cholesky_ex(h.flip(0, 1))
    if info.item():
        return None
    eye = torch.eye(len(h), dtype=h.dtype, device=h.device)
    u = torch.linalg.solve_triangular(factor, eye, upper=False).flip(0, 1)
    return u if torch.isfinite(u).all() else None


def check_fp8_cuda(device: torch.device, dtype: torch.dtype) -> None:
    """Row-wise `torch._scaled_mm` on CUDA: compute capability 8.9+ (Ada, Hopper, Blackwell), bfloat16 output."""
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise ValueError(f"fp8 matmuls need a GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
                         f"{torch.cuda.get_device_name(device)} is {capability[0]}.{capability[1]}: use int8")
    if dtype != torch.bfloat16:
        raise ValueError(f"fp8 matmuls (row-wise torch._scaled_mm) output bfloat16 only on CUDA: load the model with "
                         f"dtype=bfloat16, not {dtype}")


def onednn_pack(weight: torch.Tensor) -> torch.Tensor:
    """int8 `weight` (out, in) in oneDNN's blocked layout for its u8s8 GEMM (`onednn_int8_mm`): an opaque tensor the
    same size; `.to_dense()` gives its transpose back."""
    return torch.ops.onednn.qlinear_prepack(weight, None)


@torch.library.custom_op("gr00t_fast::onednn_int8_mm", mutates_args=())
def onednn_int8_mm(levels: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor,
                   zero_points: torch.Tensor) -> torch.Tensor:
    """float32 (rows, out): `levels` (rows, in; uint8, int8 levels + `ONEDNN_ZERO_POINT`) times the `onednn_pack`ed
    int8 weight, summed in int32, each output channel times its `weight_scale` (out,); `zero_points`: the weight's,
    zeros (out,) int64."""
    return torch.ops.onednn.qlinear_pointwise(levels, 1.0, ONEDNN_ZERO_POINT, packed, weight_scale, zero_points, None,
                                              1.0, 0, torch.float32, "none", [], "")


@onednn_int8_mm.register_fake
def _(levels: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor,
      zero_points: torch.Tensor) -> torch.Tensor:
    return levels.new_empty((levels.shape[0], weight_scale.shape[0]), dtype=torch.float32)


_FBGEMM_WEIGHTS: dict[int, Any] = {}  # a layer's `handle` -> FBGEMM's packed weight, while the layer lives
_fbgemm_handles = itertools.count()


@torch.library.custom_op("gr00t_fast::fbgemm_int8_mm", mutates_args=())
def fbgemm_int8_mm(levels: torch.Tensor, handle: torch.Tensor, out_features: int) -> torch.Tensor:
    """float32 (rows, `out_features`): `levels` (rows, in; float32 levels 0..`FBGEMM_STEPS`, `_fbgemm_rows`) times
    the `fbgemm_pack`ed int8 weight that `handle` names (a 0-d int64 tensor, the weight's key in `_FBGEMM_WEIGHTS`),
    summed in int32, each output channel times its scale. An op of its own whose weight is named by a tensor, so that
    `torch.compile` calls it as it is: FBGEMM's packed weight is an object Dynamo cannot trace."""
    return torch.ops.quantized.linear_dynamic(levels, _FBGEMM_WEIGHTS[int(handle)], FBGEMM_REDUCE_RANGE)


@fbgemm_int8_mm.register_fake
def _(levels: torch.Tensor, handle: torch.Tensor, out_features: int) -> torch.Tensor:
    return levels.new_empty((levels.shape[0], out_features), dtype=torch.float32)


class QuantizedLinear(nn.Module):
    """`nn.Linear` with int8 or fp8 weights (per output channel) and per-token activation quantization (int8: over
    each token's range, `_range_rows`; in 7 bits on the fbgemm engine, `_fbgemm_rows`). `engine`: int8's
    (`int8_engine`, default the one for the weight's device); `smooth`: the SmoothQuant factor per input channel
    (module docstring), None for none; `rows`: inputs of the float layer (before smoothing) the int8 weights'
    rounding is fitted to (`_round_weights`), None for plain rounding; `stored`: the (levels, scales, 1 / smooth or
    None) `levels()` and `inv_smooth` gave of this layer quantized before (`gr00t_fast.model.int8_cache`), held as
    they are (with `smooth` or `rows` too: ValueError): `linear`'s weight values are not read (it may be on the meta
    device), its dtype is, and its bias is kept.

    On the CPU engines the weight is `packed` (FBGEMM's always, oneDNN's where `onednn_packs`): an opaque tensor or
    object, not a buffer, so `state_dict` and `.to(device)` do not carry it. A quantized model is made where it runs,
    from the float checkpoint or from its own int8 cache, not copied; a deepcopied or unpickled FBGEMM layer carries
    its packed weight under a handle of its own, a oneDNN one its levels, packed again (`__getstate__`,
    `__setstate__`). `levels()` reads the int8 weight of any engine."""

    def __init__(self, linear: nn.Linear, mode: str, engine: str | None = None, smooth: torch.Tensor | None = None,
                 rows: torch.Tensor | None = None,
                 stored: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None):
        super().__init__()
        self.mode = mode
        self.qdtype, self.qmax, _ = MODES[mode]
        self.out_dtype = linear.weight.dtype
        if mode == "fp8" and linear.weight.is_cuda:
            check_fp8_cuda(linear.weight.device, self.out_dtype)
        self.engine = (engine or int8_engine(linear.weight.device).name) if mode == "int8" else "fp8"
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fitted = False  # whether the int8 levels were fitted to `rows` (`_round_weights`)
        self.gradient_levels: tuple[torch.Tensor, torch.Tensor] | None = None  # FBGEMM's, kept by `_QuantizedProduct`
        if stored is not None:
            if smooth is not None or rows is not None:
                raise ValueError("QuantizedLinear: stored levels are held as they are; smooth and rows would be unused")
            weight, scale, inv_smooth = stored
        else:
            weight, inv_smooth = linear.weight.detach(), None
            if smooth is not None:
                weight = weight.float() * smooth
                inv_smooth = smooth.reciprocal().float()  # float32, as the product it undoes
                rows = None if rows is None else rows.float() / smooth.to(rows.device)
            if mode == "int8" and rows is not None:
                weight, scale, self.fitted = _round_weights(weight, rows, self.qmax)
            else:
                weight, scale = _quantize_rows(weight, self.qdtype, self.qmax)
        self.register_buffer("inv_smooth", inv_smooth)
        self.bias = linear.bias
        if mode == "int8":  # each output channel's weight summed (scaled): what a row's offset adds (`_range_rows`)
            self.register_buffer("level_sums", weight.float().sum(dim=1, keepdim=True).mul_(scale).t())
        if self.engine == "fbgemm":  # FBGEMM packs its own copy of the int8 weight; `fbgemm_int8_mm` finds it
            self.packed = fbgemm_pack(weight, scale)
            self.name_packed()
            return
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.packed = None  # oneDNN's copy of the int8 weight where the CPU's int8 units run it (`onednn_pack`)
        if self.engine == "onednn" and weight.device.type == "cpu" and onednn_packs(*weight.shape[::-1]):
            self.packed = onednn_pack(weight)  # not a buffer: opaque
            self.register_buffer("zero_points", torch.zeros(self.out_features, dtype=torch.long), persistent=False)
        else:
            self.register_buffer("weight", weight)  # (out, in): `.t()` is the column-major operand both kernels want

    def name_packed(self) -> None:
        """A `handle` of its own naming this layer's FBGEMM weight in `_FBGEMM_WEIGHTS` while the layer lives."""
        self.handle = torch.tensor(next(_fbgemm_handles))  # not a buffer, as `packed` is not one
        _FBGEMM_WEIGHTS[int(self.handle)] = self.packed
        weakref.finalize(self, _FBGEMM_WEIGHTS.pop, int(self.handle), None)

    def __getstate__(self) -> dict:
        """A oneDNN-packed weight is opaque (no copy or pickle reads it): a copy carries its int8 levels instead."""
        state = super().__getstate__()
        if self.engine == "onednn" and self.packed is not None:
            state = {**state, "packed": self.levels()[0].contiguous()}
        return state

    def __setstate__(self, state: dict) -> None:
        """A copy (deepcopy, unpickling) of an FBGEMM layer names its own packed weight, not its original's, which
        goes with the original; a oneDNN layer's copy packs the levels it carries (`__getstate__`) where this CPU
        packs them (`onednn_packs`: unpickled where oneDNN's u8s8 sums would saturate, it keeps them plain)."""
        super().__setstate__(state)
        if self.engine == "fbgemm":
            self.name_packed()
        elif self.packed is not None and onednn_packs(self.in_features, self.out_features):
            self.packed = onednn_pack(self.packed)
        elif self.packed is not None:
            self.register_buffer("weight", self.packed)
            self.packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if self.inv_smooth is not None:
            x = x.float() * self.inv_smooth
        rows = x.reshape(-1, self.in_features)
        if torch.is_grad_enabled() and rows.requires_grad:  # the int8 / fp8 GEMMs have none: `_QuantizedProduct`
            return _QuantizedProduct.apply(rows, self).reshape(*lead, self.out_features)
        return self.product(rows).reshape(*lead, self.out_features)

    def product(self, rows: torch.Tensor) -> torch.Tensor:
        """The layer's output (rows, out) for its input `rows` (rows, in), smoothed where the layer is."""
        if self.engine == "fbgemm":  # each token's 7-bit levels, which FBGEMM takes as they are (`_fbgemm_rows`)
            levels, scale, offset = _fbgemm_rows(rows.float())
            if torch.compiler.is_compiling():  # eagerly the op itself: a custom op's Python dispatch costs a call
                out = fbgemm_int8_mm(levels, self.handle, self.out_features)
            else:
                out = torch.ops.quantized.linear_dynamic(levels, self.packed, FBGEMM_REDUCE_RANGE)
            out = out.mul_(scale).add_(offset * self.level_sums).to(self.out_dtype)
            return out if self.bias is None else out.add_(self.bias)
        if self.packed is not None:  # oneDNN's u8s8 GEMM: the levels shifted into uint8, the weight's scale fused
            levels, scale, offset = _range_rows(rows)
            levels = levels.view(torch.uint8).add_(ONEDNN_ZERO_POINT)  # two's complement: -128..127 -> 0..255
            out = onednn_int8_mm(levels, self.packed, self.weight_scale.reshape(-1), self.zero_points)
            out = out.mul_(scale).add_(offset * self.level_sums).to(self.out_dtype)
            return out if self.bias is None else out.add_(self.bias)
        n = rows.shape[0]
        if self.mode == "int8" and rows.is_cuda and n != int_mm_rows(n):  # static: a Python branch, no graph break
            rows = F.pad(rows, (0, 0, 0, int_mm_rows(n) - n))
        if self.mode == "int8":
            q, scale, offset = _range_rows(rows)
            out = torch._int_mm(q, self.weight.t()).float().mul_(scale).mul_(self.weight_scale)  # fresh: in place
            out = out.add_(offset * self.level_sums).to(self.out_dtype)[:n]
            if self.bias is not None:
                out = out.add_(self.bias)
        else:
            q, scale = _quantize_rows(rows, self.qdtype, self.qmax)
            bias = None if self.bias is None else self.bias.to(self.out_dtype)
            out = torch._scaled_mm(q, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, bias=bias,
                                   out_dtype=self.out_dtype)
        return out

    def levels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight's levels (out, in; int8 or fp8) and their float32 scales (out, 1), however the engine keeps
        them (packed by FBGEMM or oneDNN, or plain)."""
        if self.engine == "fbgemm":
            weight, _ = torch.ops.quantized.linear_unpack(self.packed)
            return weight.int_repr(), weight.q_per_channel_scales().float().reshape(-1, 1)
        weight = self.weight if self.packed is None else self.packed.to_dense().t()
        return weight, self.weight_scale.t()

    def extra_repr(self) -> str:
        smoothed = ", smoothed" if self.inv_smooth is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}, " \
               f"engine={self.engine}{smoothed}"


class _QuantizedProduct(torch.autograd.Function):
    """A `QuantizedLinear`'s output for its input rows, forward on its int8 / fp8 GEMM, the rows' gradient that of the
    layer its levels stand for (straight through: the gradient times the weight's levels times their scales, as the
    float layer's times its weight). Without it autograd saw only the rows' min and max (each token's scale and
    offset): guided real-time chunking's VJP through an int8 DiT ran on a gradient unrelated to the layer's (cosine
    ~0 to the float layer's). The weight's gradient is never asked: a loaded model's weights are frozen. On FBGEMM
    a layer keeps its levels unpacked after its first backward pass (`gradient_levels`: int8, a quarter of its float
    weight, only in the layers a gradient runs through: the DiT's on guided real-time chunking's path)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, layer: "QuantizedLinear") -> torch.Tensor:
        ctx.layer, ctx.rows_dtype = layer, rows.dtype
        return layer.product(rows.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        layer = ctx.layer
        if layer.engine != "fbgemm":
            levels, scale = layer.levels()  # oneDNN's packed copy unpacks in ~1 ms a layer; a plain one is at hand
        else:  # FBGEMM's unpacks in 18-146 ms a full-size DiT layer (its GEMM here 5-40 ms): kept after the first
            layer.gradient_levels = levels, scale = layer.gradient_levels or layer.levels()
        return ((grad.float() * scale.t()) @ levels.float()).to(ctx.rows_dtype), None


class Bf16Linear(nn.Module):
    """A float32 `nn.Linear` whose product runs in bfloat16: its weight stored in bfloat16, its input cast to bfloat16,
    the product back in float32 and the bias added there. How a layer `quantize_linears` keeps out of int8 runs in a
    float32 model on a CPU whose bf16 units pay (`kept_layers`)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return out if self.bias is None else out.add_(self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bfloat16 product"


@dataclass(frozen=True)
class KeptLayers:
    """What the layers `quantize_linears` keeps out of int8 (too lossy) run in, and the bound on a converted layer's
    own error past which it is kept."""

    dtype: torch.dtype
    max_error: float


def kept_layers(model: nn.Module, mode: str) -> KeptLayers:
    """How `quantize_linears` keeps layers of `model` out of `mode`: int8 on a CPU whose bf16 units pay (`bf16_units`),
    in bfloat16 (a bfloat16 model's own layers; in a float32 model, whatever dtype was asked, as `Bf16Linear`) with
    the bound `MAX_LAYER_ERROR_BF16`, where keeping a layer costs little (measured there); everywhere else (a GPU, a
    CPU whose bf16 is emulated or slower than float32, fp8) in the model's dtype with `MAX_LAYER_ERROR`."""
    if mode == "int8" and model.device.type == "cpu" and model.dtype in (torch.float32, torch.bfloat16) \
            and bf16_units() is not None:
        return KeptLayers(torch.bfloat16, MAX_LAYER_ERROR_BF16)
    return KeptLayers(model.dtype, MAX_LAYER_ERROR)


def fbgemm_pack(weight: torch.Tensor, scale: torch.Tensor):
    """int8 `weight` (out, in) with its per-output-channel `scale` (out, 1), packed for FBGEMM's dynamic GEMM as they
    are, without a bias (the process's quantized engine set to FBGEMM while it packs)."""
    scale = scale.reshape(-1).double()
    engine = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "fbgemm"
        with warnings.catch_warnings():  # torch.ao's quantized tensors are marked deprecated; the ops stay in torch
            warnings.simplefilter("ignore")
            q = torch._make_per_channel_quantized_tensor(weight.cpu(), scale.cpu(),
                                                         torch.zeros_like(scale, dtype=torch.long).cpu(), 0)
            return torch.ops.quantized.linear_prepack(q, None)
    finally:
        torch.backends.quantized.engine = engine


def int8_pays_on_cpu(rows: int, in_features: int, out_features: int, timed: bool) -> bool:
    """Whether `QuantizedLinear` int8 beats the float Linear on a CPU for a layer seeing `rows` rows per call: at
    least `CPU_INT8_MIN_WIDTH` wide and `CPU_INT8_MIN_MACS` multiply-adds (measured on oneDNN with VNNI), and where
    `timed` (FBGEMM, not pinned: `Int8Engine.times_layers`) at least `INT8_LAYER_MIN_SPEEDUP` x the float32 layer's
    rate at its size on FBGEMM (`fbgemm_rates`: once per size and process, ~20 sizes at full size)."""
    macs = rows * in_features * out_features
    if min(in_features, out_features) < CPU_INT8_MIN_WIDTH or macs < CPU_INT8_MIN_MACS:
        return False
    if not timed:
        return True
    int8, float32 = fbgemm_rates((rows, in_features, out_features))
    return int8 >= INT8_LAYER_MIN_SPEEDUP * float32


def quantized_weights(model: nn.Module) -> list[str]:
    """The names of the weights of the transformer stacks' Linear layers, the ones `quantize_linears` converts: what a
    load may leave on the meta device for it to read one layer at a time (`load_model(..., defer=quantized_weights)`,
    `gr00t_fast.model.deferred`)."""
    return [f"{name}.weight" for name, layer in stack_linears(model).items() if type(layer) is nn.Linear]


def stack_linears(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of `model`'s transformer stacks (`transformer_stacks`) that `quantize_linears` decides on, by their
    name in `model`, stack by stack: each a float `nn.Linear` before, a `QuantizedLinear`, `Bf16Linear` or
    `nn.Linear` after. The one list of them: what a load defers, quantizes, and saves to and reads from its cache."""
    names = {module: name for name, module in model.named_modules()}
    return {f"{names[stack]}.{name}": layer for stack in transformer_stacks(model).values()
            for name, layer in stack.named_modules() if isinstance(layer, (nn.Linear, QuantizedLinear, Bf16Linear))}


def transformer_stacks(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose Linear layers are quantized, by name."""
    eagle = model.backbone.eagle_model
    return {
        "vision": eagle.vision_model,
        "llm": eagle.language_model,
        "vl_self_attention": model.action_head.vl_self_attention,
        "dit": model.action_head.model,
    }


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The layers of `model`'s transformer stacks (`transformer_stacks`), in order: SigLIP's, Qwen3's, the VL
    self-attention's and the DiT's."""
    stacks = transformer_stacks(model)
    return [*stacks["vision"].vision_model.encoder.layers, *stacks["llm"].model.layers,
            *stacks["vl_self_attention"].transformer_blocks, *stacks["dit"].transformer_blocks]


def prompt_linears(model: nn.Module) -> frozenset[nn.Module]:
    """The Linear layers of `model` whose input rows are prompt positions (left-padded in a batch of prompts of
    different lengths): the LLM's, the VL self-attention's and the DiT's cross-attention K/V."""
    head, llm = model.action_head, model.backbone.eagle_model.language_model
    return frozenset(m for m in (*llm.modules(), *head.vl_self_attention.modules(),
                                 *(block.attn1.to_kv for block in head.model.transformer_blocks if block.cross))
                     if isinstance(m, nn.Linear))


VERDICTS = ("converted", "kept", "few_rows", "slow_on_cpu", "too_lossy")  # what `quantize_linears` made of each layer
ERROR_ROWS = 128  # input rows of the sample call kept per layer to measure its own int8 error
# rows kept per layer where its int8 weights are fitted (to `--calibration`'s observations or, on a CPU without them,
# synthetic scenes: `gr00t_fast.backends.pytorch.quantize_model`): half fit the rounding, half measure the
# error. Fitted to 8 observations, largest action difference (mean): full size 64 fitted rows 3.22 (1.03), 256 2.89
# (0.90), plain rounding 3.89 (1.38), bf16 2.46 (0.85); 48M 2.26 (0.42) and 2.00 (0.56), bf16 1.85 (0.51): the largest
# difference falls, at 48M the mean rises (`benchmarks/history.md`, 2026-11-26). 512 x 4 bytes x each layer's input
# width: ~1.2 GB more at full size (on the model's device) while the sample calls run.
FIT_ROWS = 512


class InputStats:
    """What a Linear layer was given during the sample call: the most rows in one call, each input channel's largest
    magnitude over all calls, and `keep` rows (`ERROR_ROWS`, `FIT_ROWS` where its weights are fitted) shared equally
    by its calls (each call's share evenly spaced within it: every observation of a calibration, every denoising
    step; past `keep` calls, a row of every other call, then of every fourth, ...) with the `keep // 8` largest rows
    of all calls (the ones that set a per-tensor scale)."""

    def __init__(self, x: torch.Tensor, keep: int = ERROR_ROWS):
        self.keep = keep
        self.rows, self.calls, self.stride = x.shape[0], 1, 1
        self.channel_absmax = x.abs().amax(dim=0)
        self.parts = [_evenly(x, keep)]  # one per kept call, trimmed to its share (indexing copies: none views `x`)
        self.largest = _largest(x, keep // 8)

    def add(self, x: torch.Tensor) -> None:
        self.rows, self.calls = max(self.rows, x.shape[0]), self.calls + 1
        torch.maximum(self.channel_absmax, x.abs().amax(dim=0), out=self.channel_absmax)
        self.largest = _largest(torch.cat([self.largest, _largest(x, self.keep // 8)]), self.keep // 8)
        if (self.calls - 1) % self.stride:
            return
        self.parts.append(_evenly(x, self.keep))
        if len(self.parts) > self.keep:  # every call cannot keep a row: every other one does, and so on
            self.parts, self.stride = self.parts[::2], self.stride * 2
        share, extra = divmod(self.keep, len(self.parts))  # the first `extra` calls keep one row more
        self.parts = [_evenly(part, share + (i < extra)) for i, part in enumerate(self.parts)]

    @property
    def spaced(self) -> torch.Tensor:
        return torch.cat(self.parts)

    @property
    def fit(self) -> torch.Tensor:
        """The rows the int8 weights' rounding is fitted to (`_round_weights`): every other evenly spaced row."""
        return self.spaced[0::2]

    @property
    def kept(self) -> torch.Tensor:
        """Every row kept: the evenly spaced ones and the largest."""
        return torch.cat([self.spaced, self.largest])

    @property
    def held_out(self) -> torch.Tensor:
        """The rows a converted layer's own error is measured on where its rounding was fitted: the other evenly
        spaced rows and the largest ones, none of them fitted."""
        fit = self.fit  # one row of `largest` at a time: all at once would be rows x rows x width booleans
        fitted = [(fit == row).all(dim=1).any() for row in self.largest]
        return torch.cat([self.spaced[1::2], self.largest[~torch.stack(fitted)] if fitted else self.largest])


def _evenly(x: torch.Tensor, n: int) -> torch.Tensor:
    """`n` rows of `x` evenly spaced (all of them where it has fewer)."""
    return x[torch.linspace(0, x.shape[0] - 1, min(n, x.shape[0]), device=x.device).round().long()]


def _largest(x: torch.Tensor, n: int) -> torch.Tensor:
    """The `n` rows of `x` with the largest magnitude."""
    return x[x.abs().amax(dim=1).topk(min(n, x.shape[0])).indices]


@dataclass(frozen=True, eq=False)
class SampleBatch:
    """Several sample calls run as one batched call of the model (`run()`), their inputs stacked along the batch axis
    (each call one row, its camera frames sample-major) and their prompts left-padded to the longest
    (`gr00t_fast.model.inputs.collate`): `pads` holds the padding the batch added to each call's prompt, in prompt
    positions (a call's own padding, e.g. a compiled backend's prompt step, stays: it runs at inference). `input_stats`
    keeps each call's rows to themselves (a layer's input split along its batch axis) and drops the added padding's
    rows of the layers in `prompt_fed` (`prompt_linears`): each layer's rows per call, calls and channel maxima are
    those of the calls run one by one (a layer called at every denoising step gets its calls step by step, not call by
    call, and keeps another even selection of their rows), at one read of each deferred layer per batch instead of one
    per call. `prompt_fed` holds its layers weakly: a batch kept by a caller keeps no float layer (nor its weight)
    alive after it is converted."""

    run: Callable[[], Any]
    pads: tuple[int, ...]
    prompt_fed: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    def per_call(self, layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """`layer`'s input `x` in this batch as each call's own (its rows at added padding dropped); an input with
        no batch axis (fewer than 3 dimensions: the step tables' rows, computed once for every call) as it is."""
        if x.dim() < 3:
            return [x]
        if x.shape[0] % len(self.pads):
            raise ValueError(f"a layer's input of shape {tuple(x.shape)} does not split into the batch's "
                             f"{len(self.pads)} sample calls")
        parts = x.reshape(len(self.pads), -1, *x.shape[1:])  # (calls, frames per call, positions, channels)
        return [part[:, pad:] if layer in self.prompt_fed else part for part, pad in zip(parts, self.pads)]


@torch.no_grad()
def input_stats(layers: Iterable[nn.Module], sample: Callable[[], Any] | Iterable[SampleBatch],
                keep: int = ERROR_ROWS, deferred: DeferredWeights | None = None) -> dict[nn.Module, InputStats]:
    """`InputStats` of each of `layers` (Linear layers) during `sample`: a call of the model holding them, or
    batched sample calls (`SampleBatch`), each call's rows its own. A layer whose weight is `deferred` is read as
    the call reaches it and emptied after it ran."""
    stats: dict[nn.Module, InputStats] = {}
    batches = [SampleBatch(sample, (0,))] if callable(sample) else list(sample)
    running: list[SampleBatch] = []  # the batch whose call the hooks see

    def record(layer: nn.Module, args: tuple) -> None:
        if deferred is not None:
            deferred.fill(layer)
        for part in running[-1].per_call(layer, args[0].detach()):
            x = part.reshape(-1, part.shape[-1]).float()
            if x.shape[0]:
                stats[layer].add(x) if layer in stats else stats.__setitem__(layer, InputStats(x, keep))

    layers = list(layers)
    hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    if deferred is not None:
        hooks += [layer.register_forward_hook(lambda layer, args, out: deferred.empty(layer))
                  for layer in layers if layer in deferred]
    try:
        for batch in batches:
            running.append(batch)
            batch.run()
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def smoothing(layer: nn.Linear, channel_absmax: torch.Tensor) -> torch.Tensor | None:
    """SmoothQuant's factor per input channel, sqrt(amax(x_j) / amax(w_j)) at alpha 0.5, where the inputs have outlier
    channels (one over `OUTLIER_RATIO` x the median channel's largest value); None where they have none. A channel
    quieter than `QUIET_CHANNEL` x the median counts as that (zero in the sample, it would be scaled up without
    bound at run time)."""
    median = channel_absmax.median().clamp(min=1e-12)
    if channel_absmax.max() <= OUTLIER_RATIO * median:
        return None
    weight_absmax = layer.weight.detach().float().abs().amax(dim=0).clamp(min=1e-12)
    return channel_absmax.clamp(min=QUIET_CHANNEL * median) ** SMOOTH_ALPHA / weight_absmax ** (1 - SMOOTH_ALPHA)


def relative_error(out: torch.Tensor, want: torch.Tensor) -> float:
    """How far `out` is from `want`: the norm of their difference over `want`'s (every element at once)."""
    return ((out - want).norm() / want.norm().clamp(min=1e-12)).item()


@torch.no_grad()
def layer_error(layer: nn.Linear, quantized: nn.Module, x: torch.Tensor) -> float:
    """The relative difference (`relative_error`) of `quantized`'s output from the float `layer`'s on inputs `x`."""
    x = x.to(layer.weight.dtype)
    return relative_error(quantized(x).float(), layer(x).float())


@torch.no_grad()
def weight_error(weight: torch.Tensor, levels: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> float:
    """The relative change (`relative_error`) of x @ weight^T when the weight is `levels` x `scale` (per output
    channel, as `QuantizedLinear.levels` gives them): the weights' part of a layer's error alone, its inputs `x` kept
    exact, in float64."""
    x = x.double()
    return relative_error(x @ (levels.double() * scale.double()).t(), x @ weight.detach().double().t())


@torch.no_grad()
def quantize_linears(model: nn.Module, mode: str,
                     sample: Callable[[], Any] | Iterable[SampleBatch] | None = None,
                     fit_weights: bool = False) -> dict[str, int]:
    """Swap the transformer stacks' Linear layers for `QuantizedLinear` in place; returns how many of them each
    verdict got (`VERDICTS`): converted, kept (widths the kernel cannot take), few_rows (<= MIN_ROWS rows in a call of
    `sample`: a call of the model, or sample calls batched, `SampleBatch`), slow_on_cpu (int8 on a CPU model: layers
    `int8_pays_on_cpu` refuses at the most rows of a call) and too_lossy (int8 whose own error on the sample call's
    inputs exceeds its bound, `kept_layers`: kept in bfloat16 or the model's dtype as that says), "smoothed": how
    many converted layers
    SmoothQuant smoothed (their inputs have outlier channels), "fitted": how many have their int8 levels fitted
    to the sample call's inputs, and "prepacked": how many run oneDNN's GEMM on a prepacked weight (`onednn_packs`).
    With `fit_weights`, int8 weights are rounded to fit the inputs of `sample` (`_round_weights`: the user's
    observations, or synthetic scenes), else to their nearest levels. Without `sample` every layer the kernel takes is
    converted, unsmoothed, unmeasured and plainly rounded. A model loaded with these weights deferred
    (`quantized_weights`, `model.deferred_weights`) reads each layer as the sample call reaches it and to convert it:
    its float weights are never held all at once."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}; choose one of {sorted(MODES)}")
    deferred: DeferredWeights | None = getattr(model, "deferred_weights", None)
    try:
        return _quantize_linears(model, mode, sample, fit_weights, deferred)
    finally:
        if deferred is not None:
            deferred.close()
            model.deferred_weights = None


def _quantize_linears(model: nn.Module, mode: str, sample: Callable[[], Any] | Iterable[SampleBatch] | None,
                      fit_weights: bool,
                      deferred: DeferredWeights | None) -> dict[str, int]:
    width = MODES[mode][2]
    int8 = int8_engine(model.device) if mode == "int8" else None
    engine = int8 and int8.name
    if sample is not None:
        model.action_head.step_table_cache.clear()  # the sample call computes the step tables: their layers count
    linears = {name: m for name, m in stack_linears(model).items() if type(m) is nn.Linear}
    keep = FIT_ROWS if fit_weights and mode == "int8" else ERROR_ROWS
    seen = input_stats(linears.values(), sample, keep, deferred) if sample is not None else {}  # the stacks' alone
    cpu_int8 = mode == "int8" and sample is not None and model.device.type == "cpu"
    kept = kept_layers(model, mode)
    keep_layer = Bf16Linear if kept.dtype != model.dtype else lambda layer: layer

    def verdict(layer: nn.Linear) -> str:
        rows = seen[layer].rows if layer in seen else MIN_ROWS + 1
        if layer.in_features % width or layer.out_features % width:
            return "kept"
        if rows <= MIN_ROWS:
            return "few_rows"
        if cpu_int8 and not int8_pays_on_cpu(rows, layer.in_features, layer.out_features, int8.times_layers):
            return "slow_on_cpu"
        return "converted"

    layers = [(name, verdict(layer), seen.get(layer)) for name, layer in linears.items()]
    linears.clear()
    seen.clear()  # it keys the old layers: names only from here (`replace_layers`)
    counts = dict.fromkeys(VERDICTS, 0) | {"smoothed": 0, "fitted": 0, "prepacked": 0}

    def convert(layer: nn.Linear, stats: InputStats | None) -> nn.Module:
        if deferred is not None:
            deferred.fill(layer)
        measured = stats is not None and mode == "int8"
        smooth = smoothing(layer, stats.channel_absmax) if measured else None
        quantized = QuantizedLinear(layer, mode, engine, smooth, stats.fit if measured and fit_weights else None)
        checked = stats.held_out if quantized.fitted else stats.kept if measured else None
        if measured and layer_error(layer, quantized, checked) > kept.max_error:
            counts["too_lossy"] += 1
            return keep_layer(layer)
        counts["converted"] += 1
        counts["smoothed"] += smooth is not None
        counts["fitted"] += quantized.fitted
        counts["prepacked"] += quantized.engine == "onednn" and quantized.packed is not None
        return quantized

    # fitting the weights takes minutes at full size on a CPU: a terminal sees it move
    with tqdm(total=len(layers), desc="rounding the int8 weights to fit the sample calls (GPTQ)", unit="layer",
              disable=not (fit_weights and mode == "int8" and getattr(sys.stderr, "isatty", lambda: False)())) as bar:
        for i, (name, decided, stats) in enumerate(layers):
            layers[i] = None  # its kept rows go with it: they are not all held beside the int8 weights at the end
            if decided != "converted":
                counts[decided] += 1
            else:
                replace_layers(model, [name], lambda layer, stats=stats: convert(layer, stats))
            bar.update(1)
    layers.clear()
    for layer in deferred.pending() if deferred is not None else ():  # the layers that stay in float, read for good
        deferred.fill(layer)
    model.action_head.step_table_cache.clear()  # the tables were computed with the old weights
    return counts
