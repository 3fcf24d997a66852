"""`compile` backend: the whole call after preprocessing (vision, LLM, VL self-attention, every denoising step,
decoding) as one `torch.compile` function.

Compiled with `fullgraph=True` (a graph break is an error, not a silent slowdown) and static shapes: each new
(batch, prompt length, cameras, steps) triggers one recompilation, then runs from the cache. Prompts are padded to
`prompt_step` tokens of instruction (`Processor`): every instruction of 1-32 tokens has one length, so the warm-up
and a new instruction do not recompile. The padding is hidden from the action head too, so a batch of instructions
of different lengths gets each row's own actions (as fleet serving does), where the `torch` backend reproduces
upstream, whose padding reaches the action head. The step tables are computed eagerly and passed in
(`FlowMatchingActionHead.step_tables`). `mode="reduce-overhead"` replays the whole call as one CUDA graph on a
GPU; `backend="aot_eager"` skips Inductor (fast to compile, used by the CPU tests to prove the graph has no breaks).
On a CPU Inductor writes its C++ wrapper (`cpp_wrapper`, the default there): the call's host-side glue runs as C++
instead of Python, which is what a small, overhead-bound checkpoint spends its time on (benchmarks/README.md).
Inductor keeps its compiled code in `cache_dir()/inductor` (`keep_compiled_code`); a new shape is compiled into it by
one process at a time (`runtime.cache.locked`): a second one loading the same checkpoint at once waits, then loads
the first one's code. One graph has no backbone / action-head boundary: no stage split is reported. The first call of
each signature is checked against the model's own kernels (`EagerCheck`): where the compiled call's actions differ by
more than the arithmetic explains, it says so in one line and the model's own kernels run from then on.
"""

import contextlib
import os
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Iterator

import torch

from gr00t_fast.backends.base import STATIC_PROMPT_STEP, LoadRequest
from gr00t_fast.backends.pytorch import PyTorchBackend
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.quantize import int8_engine
from gr00t_fast.runtime.cache import cache_dir, locked
from gr00t_fast.runtime.progress import ticking

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"

MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# input shapes one compiled model may take. Dynamo's default (8) makes the 9th a hard error under fullgraph=True:
# a server batching robots sees batch sizes x prompt lengths x step counts, and its 9th shape failed
MAX_COMPILED_SHAPES = 64

# Dynamo traces through the rotary tables' lru_cache (their arguments are static: the traced values are the cached
# ones) and says so in 12 lines that tell a user nothing
warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools.lru_cache`-wrapped function",
                        category=UserWarning)


def cpp_compiler_missing() -> str | None:
    """Why Inductor could not compile its C++ kernels here, in one line: none of the compilers it looks for
    (`torch._inductor.config.cpp.cxx`: `CXX`, else g++) answers `--version`; None where one does. Run as Inductor
    does, on the thread that compiles (its config is per thread), before any weight is read."""
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        get_cpp_compiler()
    except InvalidCxxCompiler as error:
        return str(error).strip().splitlines()[0]
    return None


def keep_compiled_code() -> Path:
    """Inductor's on-disk caches (compiled graphs and their AOTAutograd wrappers, keyed by the graph, its shapes,
    torch's version and the CPU or GPU) beside gr00t-fast's other artifacts, `cache_dir()/inductor`, instead of
    `/tmp`, which a reboot empties: a second run loads its compiled code instead of compiling again. A folder the
    user named with `TORCHINDUCTOR_CACHE_DIR` is kept; Inductor's default, which torch writes into that variable
    the first time anything asks for its cache (writing a checkpoint does), is not a choice and is replaced."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get(INDUCTOR_CACHE_ENV) in (None, os.path.abspath(default_cache_dir())):
        os.environ[INDUCTOR_CACHE_ENV] = str(cache_dir() / "inductor")
    return Path(os.environ[INDUCTOR_CACHE_ENV])


# Inductor's options for every compile here, its mode's own (`list_mode_options`) added. comprehensive_padding off: on
# an H100 (torch 2.11) Inductor's padded strides made the vision-language backbone's features 4.5 off and the actions
# 0.33 off NVIDIA's on the case tried; without it 1.7e-6, as eager, and the cuda-graph load 2e-6 on all four cases
# (benchmarks/results/gpu/h100_2026-11-26_evening_runs.md). Inductor itself leaves it off on a CPU, where compiles were
# exact all along. Options override Inductor's config: TORCHINDUCTOR_COMPREHENSIVE_PADDING=1 does not turn it back on.
INDUCTOR_OPTIONS = {"comprehensive_padding": False}


def inductor_options(mode: str | None = None, dynamic: bool | None = None, extra: dict | None = None) -> dict:
    """`torch.compile(options=...)` for Inductor in `mode`: the mode's options, `INDUCTOR_OPTIONS`, then `extra`."""
    from torch._inductor import list_mode_options

    return {**list_mode_options(mode or "default", dynamic), **INDUCTOR_OPTIONS, **(extra or {})}


# a wrong compiled kernel moves the actions by tenths (Inductor on an H100, float32, NVIDIA's reference cases: 0.33 and
# 0.42 as a CUDA graph, 0.29-0.43 as the compile backend, the eager kernels 2e-6; benchmarks/results/gpu), a compiler's
# own rounding by far less (compile against eager on a CPU at 48M: float32 8e-7, bf16 0.012, int8 matmuls 0.016)
AGREE_FLOAT32 = 1e-3  # float32 matmuls at full precision (no TF32), nothing quantized
AGREE_ROUNDED = 0.1  # bf16 / fp16, TF32, or int8 matmuls: bf16 itself is 1.6e-2 from float32 at full size
# fp8 (e4m3: 3 bits of mantissa) turns the compiler's bf16 rounding into flipped fp8 levels: its CUDA graph was 0.107
# from its own eager kernels at full size on an H200 (0.106 on another; int8 0.040, bf16 0.016), fp8 itself 0.24-0.27
# from float32. Provisional, from that measurement: twice it. The compiler fault above (0.29-0.52, NVIDIA's tiny
# checkpoint in float32) is not measured on an fp8 model, so the bound is not shown to separate a fault from fp8's own
# rounding.
AGREE_FP8 = 0.2


def whole_call_args(model: torch.nn.Module, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> tuple:
    """The arguments of the model's whole call (its `forward`), the step tables computed eagerly."""
    tables = model.action_head.step_tables(num_steps, noise.shape[1])
    return (inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state, inputs.embodiment_id, noise,
            num_steps, tables, inputs.isolate_padding)


def signature(inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> tuple:
    """What a compiled call is specialized on: tensor shapes/dtypes, int embodiment ids, None masks, steps."""
    key: list = [num_steps, tuple(noise.shape)]
    for f in fields(inputs):
        value = getattr(inputs, f.name)
        key.append((f.name, tuple(value.shape), value.dtype) if torch.is_tensor(value) else (f.name, value))
    return tuple(key)


class EagerCheck:
    """Each signature's first compiled call compared with the model's own kernels on the same arguments. Where the
    actions differ by more than the model's arithmetic explains (`AGREE_*`; a NaN where the model's own are finite
    counts as a difference), `fallback` says so, once, in a warning too, and the caller runs the model's own kernels
    from then on. `differences`: the largest difference of every check, for reports."""

    def __init__(self, backend_name: str, model: torch.nn.Module):
        self.backend_name, self.model = backend_name, model
        self.checked: set[tuple] = set()
        self.differences: list[float] = []
        self.fallback: str | None = None

    def bound(self) -> float:
        from gr00t_fast.model.quantize import Bf16Linear, QuantizedLinear

        layers = [m for m in self.model.modules() if isinstance(m, (QuantizedLinear, Bf16Linear))]
        if any(getattr(m, "mode", None) == "fp8" for m in layers):
            return AGREE_FP8
        rounded = self.model.dtype != torch.float32 or torch.get_float32_matmul_precision() != "highest" or layers
        return AGREE_ROUNDED if rounded else AGREE_FLOAT32

    def __call__(self, key: tuple, actions: torch.Tensor, args: tuple) -> torch.Tensor | None:
        """None where `actions` stand (this signature checked before, or within the bound); else the model's own
        actions on `args`, `fallback` set. Only a check that finished marks the signature checked."""
        if key in self.checked:
            return None
        own = self.model(*args)
        largest = float((actions.float() - own.float()).abs().max()) if bool(torch.isfinite(own).all()) else 0.0
        self.differences.append(largest)
        self.checked.add(key)
        if largest <= self.bound():  # a NaN is not
            return None
        self.fallback = (f"{self.backend_name}: the compiled call's actions differ from the model's own kernels by "
                         f"{largest:.3g} (batch {len(own)}, {key[0]} steps, {self.model.dtype}): a fault of the "
                         "compiler on this device; the model's own kernels run from now on")
        warnings.warn(self.fallback, RuntimeWarning, stacklevel=2)
        return own


@contextlib.contextmanager
def compiling(code_cache: Path | None, desc: str, new: bool) -> Iterator[None]:
    """Around a compiled call: where it is `new` (it compiles), Inductor's cache `code_cache` for this process alone
    (`runtime.cache.locked`: a second process compiling the same code waits, then reads it) and `desc` as a progress
    line; nothing otherwise."""
    with locked(code_cache) if new and code_cache else contextlib.nullcontext(), ticking(desc, enabled=new):
        yield


def allow_compiled_shapes() -> None:
    """Let one compiled model take `MAX_COMPILED_SHAPES` input shapes (Dynamo's `recompile_limit`; a higher limit
    set by the user is kept)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, MAX_COMPILED_SHAPES)


class CompiledBackend(PyTorchBackend):
    name = "compile"
    prompt_step = STATIC_PROMPT_STEP

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        """As `PyTorchBackend.configure`; on a CPU without a C++ compiler for Inductor (`cpp_compiler_missing`) the
        backend is refused before any weight is read, and int8 on a CPU where it runs on FBGEMM
        (a CPU without VNNI or AMX: the whole model compiled there is neither tested nor measured; the torch
        backend compiles its transformer blocks, `gr00t_fast.backends.regional`) and where
        Inductor's weight freezing is on (`TORCHINDUCTOR_FREEZING=1`): it turns `torch._int_mm` (the layers whose
        weights are not prepacked, `gr00t_fast.model.quantize.onednn_packs`) into oneDNN's quantized linear with int8
        activations, a reference kernel on an AVX512-VNNI Xeon (23-26 s for one
        320x2048x2048 product against 3-6 ms with uint8 ones; benchmarks/history.md, 2026-11-27)."""
        request = super().configure(request)
        if request.on_cpu() and request.options.get("backend", "inductor") == "inductor" and \
                (missing := cpp_compiler_missing()):
            raise ValueError(f"--backend compile on a CPU needs a C++ compiler for Inductor's kernels ({missing}): "
                             "install g++ or name one in CXX, or use --backend torch")
        engine = int8_engine("cpu") if request.quantize == "int8" and request.on_cpu() else None
        if engine is not None and engine.name == "fbgemm":
            raise ValueError(f"--backend compile --quantize int8 compiles oneDNN's int8 GEMM (fast with VNNI or "
                             f"AMX); int8 runs on FBGEMM here ({engine.reason}): use --backend torch, which "
                             "compiles the int8 model's transformer blocks")
        if engine is not None:
            import torch._inductor.config as inductor_config

            if inductor_config.freezing:
                raise ValueError("--backend compile --quantize int8 with Inductor's weight freezing on "
                                 "(TORCHINDUCTOR_FREEZING=1): freezing hands torch._int_mm's int8 activations to "
                                 "oneDNN's quantized linear, whose int8-activation kernel took seconds a layer on "
                                 "a CPU: unset TORCHINDUCTOR_FREEZING, or use --backend torch")
        return request

    def __init__(self, model: torch.nn.Module, mode: str | None = None, backend: str = "inductor",
                 fullgraph: bool = True, dynamic: bool = False, cpp_wrapper: bool | None = None, check: bool = True):
        """`check`: each signature's first call compared with the model's own kernels (`EagerCheck`; off only where
        tensors hold no values, as in a trace on fake CUDA)."""
        super().__init__(model)
        self.check = check
        if mode not in MODES:
            raise ValueError(f"compile mode {mode!r} is not one of {MODES}")
        if mode not in (None, "default") and backend != "inductor":
            raise ValueError(f"compile mode {mode!r} needs backend='inductor', got {backend!r}")
        plain_inductor = backend == "inductor" and mode in (None, "default")
        if cpp_wrapper is None:
            cpp_wrapper = plain_inductor and self.device.type == "cpu"
        self.cpp_wrapper = cpp_wrapper
        if cpp_wrapper and not plain_inductor:
            raise ValueError(f"cpp_wrapper needs backend='inductor' and no mode, got {backend!r} and {mode!r}")
        opts = dict(backend=backend, fullgraph=fullgraph, dynamic=dynamic)
        if backend == "inductor":
            opts["options"] = inductor_options(mode, dynamic, {"cpp_wrapper": True} if cpp_wrapper else None)
        # Inductor's on-disk cache (None: the backend compiles none), written by one process at a time (`locked`)
        self.code_cache = keep_compiled_code() if backend == "inductor" else None
        allow_compiled_shapes()
        self.whole_call = torch.compile(model, **opts)
        self.compiled_shapes: set[tuple] = set()  # signatures compiled for: a new one shows a progress line
        self.eager_check = EagerCheck(self.name, model)

    @property
    def fallback(self) -> str | None:
        return self.eager_check.fallback

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        args = whole_call_args(self.model, inputs, noise, num_steps)
        if self.whole_call is self.model:  # the compiled call disagreed with the model's own kernels (`EagerCheck`)
            return self.model(*args)
        key = signature(inputs, noise, num_steps)
        new = (f"torch.compile: compiling for batch {inputs.batch_size}, {inputs.input_ids.shape[1]} prompt tokens, "
               f"{inputs.pixel_values.shape[0]} images, {num_steps} steps (once per input shape, a minute or more)")
        # a second process compiling the same shape waits for the first, then loads its code from the cache
        with compiling(self.code_cache, new, key not in self.compiled_shapes):
            actions = self.whole_call(*args)
        self.compiled_shapes.add(key)
        own = self.eager_check(key, actions, args) if self.check else None
        if own is not None:
            self.whole_call, actions = self.model, own
        return actions
