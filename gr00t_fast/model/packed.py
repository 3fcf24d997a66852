"""Linear layers with their weights packed once for oneDNN: the eager path where that pays on a CPU.

A bf16 `F.linear` on a CPU is a oneDNN GEMM that reorders its weight into oneDNN's blocked layout on every call.
Packed at load (`torch.ops.mkldnn._reorder_linear_weight`, what Inductor's weight freezing does) the reorder is
gone: the same results bit for bit, each layer 5-11% faster at full size's shapes and 20-40% at the 48M checkpoint's
(AVX512-BF16, 2 threads; benchmarks/history.md, "Packed bf16 weights"). In bf16 the tanh-GELU after a projection
(SigLIP's fc1, the DiT's feed-forward) becomes the GEMM's post-op, applied to the float32 accumulator before the
rounding to bf16: one pass less, and a rounding less than `F.gelu` on the bf16 output. A float32 layer has no rounding
to spare, and there the post-op costs more than the pass it saves (AMD EPYC Zen 3, 2 threads: SigLIP's fc1 at full
size 31 ms fused against 21 ms with `F.gelu` after it; a full-size call 3% faster, 48M 3-5%; history.md, "float32's
GELU after its GEMM"): its GELU is `F.gelu` on the GEMM's output, as NVIDIA's pipeline runs it.

A float32 `F.linear` runs MKL's GEMM instead, which on an AMD EPYC with AVX2 only (no AVX-512) ran full size's
shapes at 32-63 GFLOP/s where oneDNN's packed float32 GEMM ran 61-73 (1.21x at 320x2048x2048, 2.00x at the DiT's
49x1536x6144; the same values within 7e-6 on random operands, scratch, not bit for bit: another order of the sums; 2
threads, `benchmarks/gemm_rates.py`): a full-size call 1.58x NVIDIA's fp32 packed against 1.32x
(benchmarks/README.md, "AVX2 only"; its peak memory 11.9 GB against 10.7 GB). So float32 packs too on an AMD CPU
with AVX2 and no AVX-512, for checkpoints of `precision.BF16_MIN_PARAMETERS` or more (bf16's bound, calls
overhead-bound below: smaller ones, NVIDIA's tiny reference among them, stay as NVIDIA's pipeline runs them); on
AVX-512 float32 layers gained -7% to +11% packed and stay plain. Not measured on Intel CPUs with AVX2 only (where MKL
is Intel's own) nor on other architectures: they stay plain.

A packed weight is an opaque oneDNN tensor: no state dict or export can read it (a deepcopied or unpickled layer
carries it unpacked and packs it again), and `torch.compile` only through `packed_linear`, an op of its own (the
`torch` backend's compiled int8 blocks). So only the `torch` backend runs a packed model (`gr00t_fast.loading`
packs it after any quantization), and `unpack_linears` gives any other consumer of the model its plain `nn.Linear`
layers back, bit for bit. oneDNN's op has no gradient (autograd dropped the layer's share silently): where one is
asked of its input (guided real-time chunking's VJP), a packed layer's product is `_PackedProduct`, its backward on
the weight unpacked. (int8's large weights are prepacked for oneDNN by `gr00t_fast.model.quantize` as the layers
are converted: their GEMM is an op of its own that `torch.compile` passes through.)
"""

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gr00t_fast.model import precision
from gr00t_fast.model.quantize import bf16_units
from gr00t_fast.model.swap import replace_layers
from gr00t_fast.runtime.cpuinfo import cpuinfo_field

__all__ = ["PackedLinear", "float32_packs", "linear_gelu", "pack_linears", "packed_layers", "packed_linear",
           "packing_pays", "parameter_count", "unpack_linears"]


@torch.library.custom_op("gr00t_fast::packed_linear", mutates_args=())
def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """`x` (..., in) times the `PackedLinear` weight `packed`, plus `bias`, then `activation` ("none" or "gelu": the
    tanh-GELU) on oneDNN's packed GEMM. An op of its own, so that `torch.compile` calls it as it is: Inductor's own
    lowering of oneDNN's linear takes only weights it packed itself (an int8 model's transformer blocks compiled
    with their float layers packed, `gr00t_fast.backends.regional`)."""
    return _linear_pointwise(x, packed, bias, activation)


def _linear_pointwise(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None,
                      activation: str) -> torch.Tensor:
    """`packed_linear` on oneDNN's op itself: what an eager call runs (a custom op's Python dispatch costs a call)."""
    algorithm = "tanh" if activation == "gelu" else ""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, activation, [], algorithm)


@packed_linear.register_fake
def _(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


class PackedLinear(nn.Module):
    """`nn.Linear` (bfloat16 or float32) with its weight in oneDNN's layout; `activation="gelu"` adds a tanh-GELU,
    fused into the GEMM in bf16, `F.gelu` on its output in float32 (the module's docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)  # not a buffer: opaque
        self.bias = linear.bias

    def forward(self, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
        if activation == "gelu" and self.packed.dtype != torch.bfloat16:
            return F.gelu(self(x), approximate="tanh")
        if torch.is_grad_enabled() and x.requires_grad:  # oneDNN's op has no gradient: `_PackedProduct` gives x's
            out = _PackedProduct.apply(x, self.packed)
            out = out if self.bias is None else out + self.bias
            return F.gelu(out, approximate="tanh") if activation == "gelu" else out
        product = packed_linear if torch.compiler.is_compiling() else _linear_pointwise
        return product(x, self.packed, self.bias, activation)

    def __getstate__(self) -> dict:
        """The packed weight is opaque (no copy or pickle reads it): a copy carries it unpacked (`__setstate__`)."""
        return {**super().__getstate__(), "packed": self.packed.to_dense()}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.packed, None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> "PackedLinear":
        """A layer without bias over `weight` (out, in) as it is: no layer made first, no draw from the process's
        random state (the probes' and benchmarks' GEMM)."""
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        linear.weight = nn.Parameter(weight, requires_grad=False)
        return cls(linear)

    def unpacked(self) -> nn.Linear:
        """The plain layer again, its weight the same values in the usual (out, in) layout."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = nn.Parameter(self.packed.to_dense(), requires_grad=False)
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        dtype = str(self.packed.dtype).removeprefix("torch.")
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed {dtype}"


class _PackedProduct(torch.autograd.Function):
    """x times a packed weight, forward on oneDNN's packed GEMM, its gradient for x (the weight's is never asked:
    a loaded model's weights are frozen) from the weight unpacked in the backward pass alone."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        ctx.packed = packed
        return _linear_pointwise(x, packed, None, "none")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad @ ctx.packed.to_dense(), None


def linear_gelu(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`F.gelu(layer(x), approximate="tanh")`, fused into the GEMM where `layer` is packed in bf16 (`PackedLinear`)."""
    if isinstance(layer, PackedLinear):
        return layer(x, activation="gelu")
    return F.gelu(layer(x), approximate="tanh")


def packing_pays(model: nn.Module) -> bool:
    """Whether `model` runs faster packed, in a torch built with oneDNN on a CPU: bfloat16 where the CPU's bf16 units
    pay (`bf16_units`: AMX, or AVX512-BF16 measured faster than float32), float32 where it packs on this CPU
    (`float32_packs`: AMD, AVX2, no AVX-512) and the model at least `precision.BF16_MIN_PARAMETERS` (module
    docstring). Elsewhere `dtype="auto"` runs float32 unpacked, and a bf16 model pinned there runs unpacked (full
    size on an Intel Xeon whose AVX512-BF16 is slower than float32: 6.07 s a call unpacked, 6.10 s packed, two runs;
    benchmarks/history.md)."""
    if model.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if model.dtype == torch.bfloat16:
        return bf16_units() is not None
    return model.dtype == torch.float32 and float32_packs() \
        and parameter_count(model) >= precision.BF16_MIN_PARAMETERS


def float32_packs() -> bool:
    """Whether float32 layers pack on this CPU (a large enough model, `packing_pays`): in a torch built with oneDNN,
    on an AMD CPU with AVX2 and no AVX-512, the one class measured (MKL's float32 GEMM slow there)."""
    return torch.backends.mkldnn.is_available() and torch.cpu._is_avx2_supported() \
        and not torch.cpu._is_avx512_supported() and cpuinfo_field("vendor_id") == "AuthenticAMD"


def _swap(model: nn.Module, kind: type, convert: Callable[[nn.Module], nn.Module], where=lambda layer: True) -> int:
    """Each `kind` layer of `model` that `where` accepts replaced by `convert(layer)`, one at a time
    (`replace_layers`: never two copies of the model)."""
    names = [name for name, layer in model.named_modules() if name and type(layer) is kind and where(layer)]
    return replace_layers(model, names, convert)


@torch.no_grad()
def pack_linears(model: nn.Module) -> int:
    """Every `nn.Linear` of `model` in its dtype (bfloat16 or float32) swapped for a `PackedLinear` in place; returns
    how many."""
    dtype = model.dtype if model.dtype in (torch.bfloat16, torch.float32) else None
    return _swap(model, nn.Linear, PackedLinear, lambda layer: layer.weight.dtype == dtype)


@torch.no_grad()
def unpack_linears(model: nn.Module) -> int:
    """Every `PackedLinear` of `model` back to a plain `nn.Linear` in place; returns how many (0: none were packed)."""
    return _swap(model, PackedLinear, PackedLinear.unpacked)


def parameter_count(model: nn.Module) -> int:
    """How many parameters `model` has, its packed weights (opaque, not `parameters()`) counted."""
    return sum(p.numel() for p in model.parameters()) + sum(
        m.in_features * m.out_features for m in model.modules() if type(m) is PackedLinear)


def packed_layers(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """How many of `model`'s layers are packed (of `dtype` only, where given)."""
    return sum(type(m) is PackedLinear and dtype in (None, m.packed.dtype) for m in model.modules())
