"""INT8 / FP8 matmuls for the PyTorch backends: Linear layers swapped for `torch._int_mm` / `torch._scaled_mm`.

Weights are quantized once, symmetric with one scale per output channel; activations are quantized per token at
run time (a reduction on the device, no host sync, so the result still compiles and captures in a CUDA graph).

    int8  int8 x int8 -> int32 (`torch._int_mm`), rescaled into the model dtype. The weight is stored (out, in)
          row-major and handed over as its transpose, a column-major (in, out) operand: the "TN" layout cuBLASLt's
          int8 GEMM is exact with; on CUDA rows are padded to a multiple of 8 above 16 (it refuses <= 16 rows, and
          17 was reported wrong on CUDA 12.1, pytorch#107671). On a CPU it is oneDNN's s8 GEMM (VNNI), any rows.
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
"""

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gr00t_fast.model.swap import replace_layers

MODES = {"int8": (torch.int8, 127.0, 8), "fp8": (torch.float8_e4m3fn, 448.0, 16)}  # dtype, largest value, width
MIN_ROWS = 4  # layers that see this many rows or fewer per call stay in float
# int8 on a CPU (oneDNN's VNNI `_int_mm`, 1 thread): the per-token quantization and the rescale cost ~40 us a layer
# plus a share that grows with rows x (in + out); the matmul it shortens grows with rows x in x out. It paid from
# min(in, out) = 256 and 4M multiply-adds (320x256x256 1.35x, 16x512x512 1.3x) and cost below (320x384x96 0.7x,
# 49x256x256 0.85x, every layer of NVIDIA's tiny checkpoint 0.3-0.9x): benchmarks/README.md, "CPU precisions".
CPU_INT8_MIN_WIDTH = 256
CPU_INT8_MIN_MACS = 4_000_000


def int_mm_rows(n: int) -> int:
    """Rows `torch._int_mm` gets for `n` rows: a multiple of 8, more than 16."""
    return max(24, -(-n // 8) * 8)


def _quantize_rows(x: torch.Tensor, dtype: torch.dtype, qmax: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization of a 2-D tensor: (values in `dtype`, float32 scales (rows, 1))."""
    x = x.float()
    if x.is_cuda:
        absmax = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True)
    else:  # the same values; the CPU's inf-norm is a generic reduction, 3-8x slower than abs + amax at these widths
        absmax = x.abs().amax(dim=1, keepdim=True)
    scale = absmax.clamp(min=1e-12) / qmax
    q = x / scale  # within [-qmax, qmax] up to rounding: int8 rounds to at most 127, fp8 (no inf) is clamped
    return (q.round() if dtype == torch.int8 else q.clamp(-qmax, qmax)).to(dtype), scale


def check_fp8_cuda(device: torch.device, dtype: torch.dtype) -> None:
    """Row-wise `torch._scaled_mm` on CUDA: compute capability 8.9+ (Ada, Hopper, Blackwell), bfloat16 output."""
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise ValueError(f"fp8 matmuls need a GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
                         f"{torch.cuda.get_device_name(device)} is {capability[0]}.{capability[1]}: use int8")
    if dtype != torch.bfloat16:
        raise ValueError(f"fp8 matmuls (row-wise torch._scaled_mm) output bfloat16 only on CUDA: load the model with "
                         f"dtype=bfloat16, not {dtype}")


class QuantizedLinear(nn.Module):
    """`nn.Linear` with int8 or fp8 weights (per output channel) and per-token activation quantization."""

    def __init__(self, linear: nn.Linear, mode: str):
        super().__init__()
        self.mode = mode
        self.qdtype, self.qmax, _ = MODES[mode]
        self.out_dtype = linear.weight.dtype
        if mode == "fp8" and linear.weight.is_cuda:
            check_fp8_cuda(linear.weight.device, self.out_dtype)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = _quantize_rows(linear.weight.detach(), self.qdtype, self.qmax)
        self.register_buffer("weight", weight)  # (out, in): `.t()` is the column-major operand both kernels want
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        n = rows.shape[0]
        if self.mode == "int8" and rows.is_cuda and n != int_mm_rows(n):  # static: a Python branch, no graph break
            rows = F.pad(rows, (0, 0, 0, int_mm_rows(n) - n))
        q, scale = _quantize_rows(rows, self.qdtype, self.qmax)
        if self.mode == "int8":
            out = torch._int_mm(q, self.weight.t()).float().mul_(scale).mul_(self.weight_scale)  # fresh: in place
            out = out.to(self.out_dtype)[:n]
            if self.bias is not None:
                out = out.add_(self.bias)
        else:
            bias = None if self.bias is None else self.bias.to(self.out_dtype)
            out = torch._scaled_mm(q, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, bias=bias,
                                   out_dtype=self.out_dtype)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"


def int8_pays_on_cpu(rows: int, in_features: int, out_features: int) -> bool:
    """Whether `QuantizedLinear` int8 beats the float Linear on a CPU for a layer seeing `rows` rows per call."""
    macs = rows * in_features * out_features
    return min(in_features, out_features) >= CPU_INT8_MIN_WIDTH and macs >= CPU_INT8_MIN_MACS


def transformer_stacks(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose Linear layers are quantized, by name."""
    eagle = model.backbone.eagle_model
    return {
        "vision": eagle.vision_model,
        "llm": eagle.language_model,
        "vl_self_attention": model.action_head.vl_self_attention,
        "dit": model.action_head.model,
    }


@torch.no_grad()
def rows_seen(model: nn.Module, sample: Callable[[], Any]) -> dict[nn.Module, int]:
    """Most rows (tokens x batch) each Linear layer of `model` multiplies during `sample()`."""
    rows: dict[nn.Module, int] = {}

    def record(layer: nn.Module, args: tuple) -> None:
        rows[layer] = max(rows.get(layer, 0), args[0].numel() // args[0].shape[-1])

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if type(m) is nn.Linear]
    try:
        sample()
    finally:
        for hook in hooks:
            hook.remove()
    return rows


@torch.no_grad()
def quantize_linears(model: nn.Module, mode: str, sample: Callable[[], Any] | None = None) -> dict[str, int]:
    """Swap the transformer stacks' Linear layers for `QuantizedLinear` in place; returns the counts converted, kept
    (widths the kernel cannot take), few_rows (<= MIN_ROWS rows during `sample()`, a call of the model) and
    slow_on_cpu (int8 on a CPU model: layers `int8_pays_on_cpu` refuses at the rows seen during `sample()`)."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}; choose one of {sorted(MODES)}")
    width = MODES[mode][2]
    if sample is not None:
        model.action_head.step_table_cache.clear()  # the sample call computes the step tables: their layers count
    rows = rows_seen(model, sample) if sample is not None else {}
    cpu_int8 = mode == "int8" and sample is not None and model.device.type == "cpu"

    def verdict(layer: nn.Linear) -> str:
        seen = rows.get(layer, MIN_ROWS + 1)
        if layer.in_features % width or layer.out_features % width:
            return "kept"
        if seen <= MIN_ROWS:
            return "few_rows"
        if cpu_int8 and not int8_pays_on_cpu(seen, layer.in_features, layer.out_features):
            return "slow_on_cpu"
        return "converted"

    stacks = transformer_stacks(model)
    verdicts = {stack: [(parent, name, verdict(child)) for parent, module in stacks[stack].named_modules()
                        for name, child in module.named_children() if type(child) is nn.Linear] for stack in stacks}
    rows.clear()  # it keys the old layers: names only from here (`replace_layers`)
    counts = {key: sum(v == key for layers in verdicts.values() for *_, v in layers)
              for key in ("converted", "kept", "few_rows", "slow_on_cpu")}
    for stack, layers in verdicts.items():
        replace_layers(stacks[stack], [(parent, name) for parent, name, v in layers if v == "converted"],
                       lambda layer: QuantizedLinear(layer, mode))
    model.action_head.step_table_cache.clear()  # the tables were computed with the old weights
    return counts
