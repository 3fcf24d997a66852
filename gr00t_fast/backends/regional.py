"""The `torch` backend's int8 model on a CPU with its transformer blocks compiled one by one (regional compilation):
each SigLIP, Qwen3, VL self-attention and DiT layer runs as Inductor's code, the rest of the call as it is.

Eagerly, `--quantize int8`'s per-token activation quantization and its rescale are a dozen separate passes over each
layer's activations around every int8 GEMM; compiled, Inductor fuses them with each other and with the norms,
activations and residuals around them. Full size on an Intel Xeon with AVX512-VNNI (2 threads, one process, calls
alternating): 1.18-1.19x the eager int8 call; 48M 1.25x; compiling the whole call instead (`--backend compile`) ran
1.20x, but its first compile takes 13-15 min on 2 cores, the blocks' ~35 s (benchmarks/history.md, 2026-11-27). The
layers of one kind share their compiled code (Dynamo reuses it for every layer of the class: a few graphs per stack,
e.g. the DiT's cross- and self-attention blocks), with dynamic shapes: every prompt length runs the code the warm-up
compiled. Dynamo still specializes sizes of 1, so a first batch of 2 or more observations compiles once more (a
server that takes batches makes one in its warm-up: `compiles_batches_once`), and so does the first call
under `no_grad` (guided real-time chunking) after `inference_mode` ones: each such first call shows the progress
line. Inductor keeps the code in `cache_dir()/inductor` (`keep_compiled_code`): a later load reads
it instead of compiling.

Where it runs (`blocks_compile`): int8 on either CPU engine, oneDNN's or FBGEMM's (each GEMM an op Dynamo passes
through as it is, `gr00t_fast.model.quantize.onednn_int8_mm` and `fbgemm_int8_mm`, as are the float32 layers packed
for oneDNN beside FBGEMM's on an AMD CPU with AVX2 only, `gr00t_fast.model.packed.packed_linear`), with at least one
layer converted and no bfloat16 layer packed for oneDNN (a bfloat16 model pinned where bf16 pays: measured packed and
eager). A float model gains nothing measurable (48M float32: 0.995x), and CUDA runs `--backend compile` or
`cuda-graph` for the same purpose. `GR00T_FAST_COMPILE_BLOCKS=0` keeps the blocks eager.
A call with autograd on (guided real-time chunking's VJP) runs the blocks' own code. Without a C++ compiler the blocks
run their own code, said in one line before the weights are read; where compiling fails all the same (a fault of the
compiler), the blocks' own code runs from then on, said once in one line. Any other backend
loading the same model gets its blocks' own code back (`uncompile_blocks`, as packed layers are unpacked).
"""

import os
import warnings
import weakref
from typing import Callable, Hashable, TypeVar

import torch
from torch import nn

from gr00t_fast.backends.base import LoadRequest
from gr00t_fast.backends.compiled import (allow_compiled_shapes, compiling, cpp_compiler_missing, inductor_options,
                                          keep_compiled_code)
from gr00t_fast.model.packed import packed_layers
from gr00t_fast.model.quantize import INT8_ENGINES, QuantizedLinear, transformer_blocks
from gr00t_fast.runtime.interrupt import raised_by_interrupt

__all__ = ["COMPILE_BLOCKS_ENV", "CompiledBlocks", "blocks_compile", "blocks_without_compiler",
           "check_compile_blocks_env", "uncompile_blocks"]

COMPILE_BLOCKS_ENV = "GR00T_FAST_COMPILE_BLOCKS"
T = TypeVar("T")


def check_compile_blocks_env() -> bool:
    """Whether `COMPILE_BLOCKS_ENV` lets the blocks compile ("1" or unset: yes, "0": no); ValueError in one line for
    any other value."""
    value = os.environ.get(COMPILE_BLOCKS_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{COMPILE_BLOCKS_ENV}={value!r}: expected 0 (the transformer blocks eager) or 1 (compiled "
                         "where int8 runs on a CPU, the default)")
    return value == "1"


def blocks_compile(model: nn.Module) -> bool:
    """Whether the torch backend compiles `model`'s transformer blocks (module docstring): a CPU model with int8
    layers (on either engine) and no bf16 layer packed for oneDNN (a bfloat16 model where bf16 pays: that path was
    measured packed and eager; packed weights, int8's and float32's, go through ops of their own),
    not turned off by `COMPILE_BLOCKS_ENV`, on a machine with a C++ compiler for Inductor (`cpp_compiler_missing`;
    `blocks_without_compiler` says so before the weights)."""
    return model.device.type == "cpu" and check_compile_blocks_env() and not packed_layers(model, torch.bfloat16) \
        and any(isinstance(m, QuantizedLinear) and m.engine in INT8_ENGINES for m in model.modules()) \
        and cpp_compiler_missing() is None


def blocks_without_compiler(request: LoadRequest) -> str | None:
    """Before any weight is read: where a load would compile its int8 blocks (int8 on a CPU, `COMPILE_BLOCKS_ENV`
    on) but Inductor finds no C++ compiler, the line that says they run eagerly; else None. Which layers the size
    rule converts is known only once the weights are read (at 48M on an AVX2 CPU, none): the line says "wherever
    its layers run int8"."""
    if request.quantize != "int8" or not request.on_cpu() or not check_compile_blocks_env() or \
            (missing := cpp_compiler_missing()) is None:
        return None
    return (f"torch backend: no C++ compiler for Inductor ({missing}): the int8 model's transformer blocks run "
            "their own code wherever its layers run int8, slower (full size: about 1.2x on oneDNN, 1.06x on "
            "FBGEMM); install g++ or name one in CXX")


def uncompile_blocks(model: nn.Module) -> int:
    """`model`'s transformer blocks back to their own forward; how many had been compiled."""
    count = 0
    for block in transformer_blocks(model):
        count += vars(block).pop("forward", None) is not None
    return count


def _root_cause(error: BaseException) -> str:
    """The innermost error `error` wraps (Dynamo's `inner_exception`, else `__cause__`), as "Type: its first line"."""
    seen = {id(error)}
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _while_no_grad(block: nn.Module, compiled: Callable) -> Callable:
    """`block`'s forward: `compiled` (its class's forward compiled) while autograd is off, its own while it is on. It
    holds `block` weakly: a module holding a function that holds the module would live on after its model is dropped,
    until Python's cycle collector runs."""
    ref, own = weakref.ref(block), type(block).forward

    def forward(*args, **kwargs):
        return (own if torch.is_grad_enabled() else compiled)(ref(), *args, **kwargs)
    return forward


class CompiledBlocks:
    """`blocks` whose forward runs as `torch.compile`'s code (`backend`: Inductor; "aot_eager" traces without
    compiling, as the tests do) while autograd is off. `run(call, key)` runs one call of the model: the first of each
    `key` (what Dynamo compiles anew for) under Inductor's cache lock with a progress line, and where the compiler
    fails, the blocks' own code from then on (`fallback` says why, once, in a warning too)."""

    def __init__(self, blocks: list[nn.Module], backend: str | Callable = "inductor"):
        self.blocks = blocks
        self.code_cache = keep_compiled_code() if backend == "inductor" else None
        self.fallback: str | None = None
        self.keys: set[Hashable] = set()  # those a call has run for
        allow_compiled_shapes()
        opts = {"options": inductor_options(None, True)} if backend == "inductor" else {}
        compiled = {kind: torch.compile(kind.forward, backend=backend, fullgraph=True, dynamic=True, **opts)
                    for kind in {type(block) for block in blocks}}  # one per class: Dynamo's code object is shared
        self.forwards = [_while_no_grad(block, compiled[type(block)]) for block in blocks]
        self.on = False
        self.switch(True)

    def switch(self, on: bool) -> None:
        """The blocks' compiled code (`on`) or their own forward."""
        for block, forward in zip(self.blocks, self.forwards):
            vars(block).pop("forward", None)
            if on:
                block.forward = forward
        self.on = on

    def run(self, call: Callable[[], T], key: Hashable = None) -> T:
        """`call()` (one call of the model) with the blocks as they are (module docstring)."""
        if not self.on:
            return call()
        from torch._dynamo.exc import TorchDynamoException  # imported by `torch.compile` already

        desc = (f"torch.compile: compiling the int8 model's {len(self.blocks)} transformer blocks (once on this "
                "machine; about 35 s at full size on 2 cores)")
        try:
            with compiling(self.code_cache, desc, key not in self.keys):
                result = call()
        except TorchDynamoException as error:
            if raised_by_interrupt(error):
                raise
            self.switch(False)
            try:
                result = call()
            except Exception:  # the blocks' own code fails too: the call's fault, not the compiler's
                self.switch(True)
                raise
            self.fallback = (f"torch backend: compiling the int8 transformer blocks failed ({_root_cause(error)}); "
                             "their own code runs from now on")
            warnings.warn(self.fallback, RuntimeWarning, stacklevel=2)
            return result
        self.keys.add(key)
        return result
