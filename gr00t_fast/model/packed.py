"""Linear layers with their weights packed once for oneDNN: the eager bfloat16 path on a CPU whose bf16 units pay.

A bf16 `F.linear` on a CPU is a oneDNN GEMM that reorders its weight into oneDNN's blocked layout on every call.
Packed at load (`torch.ops.mkldnn._reorder_linear_weight`, what Inductor's weight freezing does) the reorder is
gone: the same results bit for bit, each layer 5-11% faster at full size's shapes and 20-40% at the 48M checkpoint's
(AVX512-BF16, 2 threads; benchmarks/history.md, "Packed bf16 weights"). The tanh-GELU after a projection (SigLIP's
fc1, the DiT's feed-forward) becomes the GEMM's post-op, applied to the float32 accumulator before the rounding to
bf16: one pass less, and a rounding less than `F.gelu` on the bf16 output.

A packed weight is an opaque oneDNN tensor: no state dict, copy, `torch.compile` or export can read it. So only
the eager `torch` backend runs a packed bf16 model (`gr00t_fast.loading` packs it after any quantization), and
`unpack_linears` gives any other consumer of the model its plain `nn.Linear` layers back, bit for bit. (int8's
large weights are prepacked for oneDNN by `gr00t_fast.model.quantize` as the layers are converted: their GEMM is an
op of its own that `torch.compile` passes through.)
"""

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gr00t_fast.model.quantize import bf16_units
from gr00t_fast.model.swap import replace_layers

__all__ = ["PackedLinear", "linear_gelu", "pack_linears", "packed_layers", "packing_pays", "unpack_linears"]


class PackedLinear(nn.Module):
    """`nn.Linear` in bfloat16 with its weight in oneDNN's layout; `activation="gelu"` fuses a tanh-GELU."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)  # not a buffer: opaque
        self.bias = linear.bias

    def forward(self, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
        algorithm = "tanh" if activation == "gelu" else ""
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, activation, [], algorithm)

    def unpacked(self) -> nn.Linear:
        """The plain layer again, its weight the same values in the usual (out, in) layout."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = nn.Parameter(self.packed.to_dense(), requires_grad=False)
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed bfloat16"


def linear_gelu(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`F.gelu(layer(x), approximate="tanh")`, fused into the GEMM where `layer` is packed."""
    if isinstance(layer, PackedLinear):
        return layer(x, activation="gelu")
    return F.gelu(layer(x), approximate="tanh")


def packing_pays(model: nn.Module) -> bool:
    """Whether `model` runs faster packed: bfloat16 on a CPU whose bf16 units pay (`bf16_units`: AMX, or AVX512-BF16
    measured faster than float32) and a torch built with oneDNN. Elsewhere `dtype="auto"` runs float32, and a bf16
    model pinned there runs unpacked (full size on an Intel Xeon whose AVX512-BF16 is slower than float32: 6.07 s a
    call unpacked, 6.10 s packed, two runs; benchmarks/history.md); float32 layers gained -7% to +11% packed on AVX512
    and are left as they are."""
    return (model.device.type == "cpu" and model.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and bf16_units() is not None)


def _swap(model: nn.Module, kind: type, convert: Callable[[nn.Module], nn.Module], where=lambda layer: True) -> int:
    """Each `kind` layer of `model` that `where` accepts replaced by `convert(layer)`, one at a time
    (`replace_layers`: never two copies of the model)."""
    return replace_layers(model, [(parent, name) for parent, module in model.named_modules()
                                  for name, child in module.named_children() if type(child) is kind and where(child)],
                          convert)


@torch.no_grad()
def pack_linears(model: nn.Module) -> int:
    """Every bfloat16 `nn.Linear` of `model` swapped for a `PackedLinear` in place; returns how many."""
    return _swap(model, nn.Linear, PackedLinear, lambda layer: layer.weight.dtype == torch.bfloat16)


@torch.no_grad()
def unpack_linears(model: nn.Module) -> int:
    """Every `PackedLinear` of `model` back to a plain `nn.Linear` in place; returns how many (0: none were packed)."""
    return _swap(model, PackedLinear, PackedLinear.unpacked)


def packed_layers(model: nn.Module) -> int:
    """How many of `model`'s layers are packed."""
    return sum(type(m) is PackedLinear for m in model.modules())
