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
the first one's code. One graph has no backbone / action-head boundary: no stage split is reported. The first call of each shape is checked
against the model's own kernels (`agrees`): where the compiled call's actions differ by more than the arithmetic
explains, it says so in one line and the model's own kernels run from then on.
"""

import contextlib
import os
import warnings
from pathlib import Path

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


# a wrong compiled kernel moves the actions by tenths (Inductor on an H100 in float32, NVIDIA's reference cases:
# 0.29-0.43, the eager kernels 2e-6; benchmarks/results/gpu), a compiler's own rounding by far less
AGREE_FLOAT32 = 1e-3  # float32 matmuls: the fused kernels round sums differently, ~1e-6 measured
AGREE_ROUNDED = 0.1  # bf16 / fp16, or quantized matmuls: bf16 itself is 1.6e-2 from float32 at full size


def whole_call_args(model: torch.nn.Module, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> tuple:
    """The arguments of the model's whole call (its `forward`), the step tables computed eagerly."""
    tables = model.action_head.step_tables(num_steps, noise.shape[1])
    return (inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state, inputs.embodiment_id, noise,
            num_steps, tables, inputs.isolate_padding)


def agrees(backend: PyTorchBackend, actions: torch.Tensor, args: tuple) -> bool:
    """Whether a compiled call's `actions` match the model's own kernels on the same `args` within what the model's
    arithmetic explains (`AGREE_*`; a NaN never does). Where not, `backend.fallback` says so, in a warning too, and
    `backend.whole_call` is the model itself from then on. True without a check where nothing is compiled."""
    model = backend.model
    if backend.whole_call is model:
        return True
    exact = model.dtype == torch.float32 and not getattr(getattr(model, "precision", None), "quantization", None)
    largest = (actions.float() - model(*args).float()).abs().max().item()
    if largest <= (AGREE_FLOAT32 if exact else AGREE_ROUNDED):
        return True
    backend.whole_call = model
    backend.fallback = (f"{backend.name}: the compiled call's actions differ from the model's own kernels by "
                        f"{largest:.3g} (batch {args[0].shape[0]}, {args[0].shape[1]} prompt tokens, {args[6]} "
                        f"steps, {model.dtype}): a fault of the compiler on this device; the model's own kernels run "
                        "from now on")
    warnings.warn(backend.fallback, RuntimeWarning, stacklevel=3)
    return False


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
        """As `PyTorchBackend.configure`; int8 where it runs on FBGEMM (a CPU without VNNI or AMX) is refused before
        any weight is read: torch.compile cannot trace FBGEMM's packed weights (fullgraph)."""
        request = super().configure(request)
        engine = int8_engine("cpu") if request.quantize == "int8" and request.on_cpu() else None
        if engine is not None and engine.name == "fbgemm":
            raise ValueError(f"--backend compile --quantize int8 compiles torch._int_mm (oneDNN: fast with VNNI or "
                             f"AMX); int8 runs on FBGEMM here ({engine.reason}), which torch.compile cannot trace: "
                             "use --backend torch")
        return request

    def __init__(self, model: torch.nn.Module, mode: str | None = None, backend: str = "inductor",
                 fullgraph: bool = True, dynamic: bool = False, cpp_wrapper: bool | None = None, check: bool = True):
        """`check`: each shape's first call compared with the model's own kernels (`agrees`; off only where tensors
        hold no values, as in a trace on fake CUDA)."""
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
        if cpp_wrapper:
            opts["options"] = {"cpp_wrapper": True}
        elif backend == "inductor":
            opts["mode"] = mode
        # Inductor's on-disk cache (None: the backend compiles none), written by one process at a time (`locked`)
        self.code_cache = keep_compiled_code() if backend == "inductor" else None
        allow_compiled_shapes()
        self.whole_call = torch.compile(model, **opts)
        self.compiled_shapes: set[tuple] = set()  # inputs compiled for: a new one shows a progress line
        self.fallback: str | None = None  # why the model's own kernels run instead (`agrees`)

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        args = whole_call_args(self.model, inputs, noise, num_steps)
        shape = (tuple(inputs.input_ids.shape), tuple(inputs.pixel_values.shape), tuple(noise.shape), num_steps,
                 inputs.attention_mask is None)
        new = (f"torch.compile: compiling for batch {inputs.batch_size}, {inputs.input_ids.shape[1]} prompt tokens, "
               f"{inputs.pixel_values.shape[0]} images, {num_steps} steps (once per input shape, a minute or more)")
        compiling = shape not in self.compiled_shapes
        # a second process compiling the same shape waits for the first, then loads its code from the cache
        with locked(self.code_cache) if compiling and self.code_cache else contextlib.nullcontext(), \
                ticking(new, enabled=compiling):
            actions = self.whole_call(*args)
        self.compiled_shapes.add(shape)
        if compiling and self.check and not agrees(self, actions, args):
            actions = self.whole_call(*args)
        return actions
