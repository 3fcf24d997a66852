"""The `torch` backend's int8 model on a CPU with its transformer blocks compiled one by one (regional compilation):
each SigLIP, Qwen3, VL self-attention and DiT layer runs as Inductor's code, the rest of the call as it is.

Eagerly, `--quantize int8`'s per-token activation quantization and its rescale are a dozen separate passes over each
layer's activations around every `torch._int_mm`; compiled, Inductor fuses them with each other and with the norms,
activations and residuals around them. Full size on an Intel Xeon with AVX512-VNNI (2 threads, one process, calls
alternating): 1.18-1.19x the eager int8 call; 48M 1.25x; compiling the whole call instead (`--backend compile`) ran
1.20x, but its first compile takes 13-15 min on 2 cores, the blocks' ~40 s (benchmarks/history.md, 2026-11-27). A
stack's blocks share one compiled code (Dynamo reuses it for every layer of the same kind), with dynamic shapes: every
prompt length, batch size and camera count runs the code the warm-up compiled. Inductor keeps it in
`cache_dir()/inductor` (`keep_compiled_code`): a later load reads it instead of compiling.

Where it runs (`blocks_compile`): int8 on oneDNN's `torch._int_mm` with at least one layer converted and no layer
packed for oneDNN (`gr00t_fast.model.packed`: a bfloat16 model pinned where bf16 pays). FBGEMM's packed weights cannot
be traced, a float model gains nothing measurable (48M float32: 0.995x), and CUDA runs `--backend
compile` or `cuda-graph` for the same purpose. `GR00T_FAST_COMPILE_BLOCKS=0` keeps the blocks eager.
A call with autograd on (guided real-time chunking's VJP) runs the blocks' own code. Where compiling fails (no C++
compiler, a fault of the compiler), the blocks' own code runs from then on, said once in one line.
"""

import contextlib
import os
import warnings
from typing import Callable, TypeVar

import torch
from torch import nn

from gr00t_fast.backends.compiled import allow_compiled_shapes, inductor_options, keep_compiled_code
from gr00t_fast.model.packed import packed_layers
from gr00t_fast.model.quantize import QuantizedLinear, transformer_stacks
from gr00t_fast.runtime.cache import locked
from gr00t_fast.runtime.progress import ticking

__all__ = ["COMPILE_BLOCKS_ENV", "CompiledBlocks", "blocks_compile", "check_compile_blocks_env", "root_cause",
           "transformer_blocks"]

COMPILE_BLOCKS_ENV = "GR00T_FAST_COMPILE_BLOCKS"
T = TypeVar("T")


def check_compile_blocks_env() -> bool:
    """Whether `COMPILE_BLOCKS_ENV` lets the blocks compile ("1" or unset: yes, "0": no); ValueError in one line for
    any other value."""
    value = os.environ.get(COMPILE_BLOCKS_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{COMPILE_BLOCKS_ENV}={value!r}: expected 0 (the transformer blocks eager) or 1 (compiled "
                         "where int8 runs on oneDNN, the default)")
    return value == "1"


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The layers of `model`'s transformer stacks (`transformer_stacks`), in order: SigLIP's, Qwen3's, the VL
    self-attention's and the DiT's."""
    stacks = transformer_stacks(model)
    return [*stacks["vision"].vision_model.encoder.layers, *stacks["llm"].model.layers,
            *stacks["vl_self_attention"].transformer_blocks, *stacks["dit"].transformer_blocks]


def blocks_compile(model: nn.Module) -> bool:
    """Whether the torch backend compiles `model`'s transformer blocks (module docstring): a CPU model with int8
    layers on oneDNN and none packed for oneDNN (a bfloat16 model where bf16 pays: `torch.compile` cannot read a
    packed weight, and that path was measured packed), not turned off by `COMPILE_BLOCKS_ENV`."""
    return model.device.type == "cpu" and check_compile_blocks_env() and not packed_layers(model) and any(
        isinstance(m, QuantizedLinear) and m.engine == "onednn" for m in model.modules())


def root_cause(error: BaseException) -> str:
    """The innermost error `error` wraps (Dynamo's `inner_exception`, else `__cause__`), as "Type: its first line"."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None and inner is not error:
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _while_no_grad(own: Callable, compiled: Callable) -> Callable:
    """A forward running `compiled` while autograd is off, `own` while it is on."""
    def forward(*args, **kwargs):
        return (own if torch.is_grad_enabled() else compiled)(*args, **kwargs)
    return forward


class CompiledBlocks:
    """`blocks` whose forward runs as `torch.compile`'s code (`backend`: Inductor; "aot_eager" traces without
    compiling, as the tests do) while autograd is off. `run(call)` runs one call of the model: its first under
    Inductor's cache lock with a progress line (the compile happens there), and where the compiler fails, the blocks'
    own code from then on (`fallback` says why, once, in a warning too)."""

    def __init__(self, blocks: list[nn.Module], backend: str = "inductor"):
        self.blocks, self.backend = blocks, backend
        self.code_cache = keep_compiled_code() if backend == "inductor" else None
        self.fallback: str | None = None
        self.called = False
        allow_compiled_shapes()
        opts = {"options": inductor_options(None, True)} if backend == "inductor" else {}
        self.compiled = [torch.compile(block.forward, backend=backend, fullgraph=True, dynamic=True, **opts)
                         for block in blocks]
        self.switch(True)

    @property
    def on(self) -> bool:
        """Whether the blocks run their compiled code (while autograd is off)."""
        return bool(self.blocks) and "forward" in vars(self.blocks[0])

    def switch(self, on: bool) -> None:
        """The blocks' compiled code (`on`) or their own forward."""
        for block, compiled in zip(self.blocks, self.compiled):
            vars(block).pop("forward", None)
            if on:
                block.forward = _while_no_grad(block.forward, compiled)

    def run(self, call: Callable[[], T]) -> T:
        """`call()` (one call of the model) with the blocks as they are (module docstring)."""
        if not self.on:
            return call()
        from torch._dynamo.exc import TorchDynamoException  # imported by `torch.compile` already

        first, self.called = not self.called, True
        desc = (f"torch.compile: compiling the int8 model's {len(self.blocks)} transformer blocks (once on this "
                "machine; about 40 s at full size on 2 cores)")
        try:
            with locked(self.code_cache) if first and self.code_cache else contextlib.nullcontext(), \
                    ticking(desc, enabled=first):
                return call()
        except TorchDynamoException as error:
            self.switch(False)
            try:
                result = call()
            except Exception:  # the blocks' own code fails too: the call's fault, not the compiler's
                self.switch(True)
                raise
            self.fallback = (f"torch backend: compiling the int8 transformer blocks failed ({root_cause(error)}); "
                             "their own code runs from now on")
            warnings.warn(self.fallback, RuntimeWarning, stacklevel=2)
            return result
