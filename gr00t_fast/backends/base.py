"""The backend contract: how the network is executed, behind one call.

    backend = make_backend("onnxruntime", model, onnx_dir=...)   # gr00t_fast.backends
    actions = backend(inputs, noise, num_steps)                  # ModelInputs -> (B, horizon, max_action_dim) fp32

Every backend subclasses `Backend` and is registered once (`gr00t_fast.backends.BACKENDS`): `missing(device)` says
what this machine lacks for it (None when it can run), `__call__` runs one call, and `stage_ms()` optionally splits
the last call's time into backbone / action head.

A backend loads itself: `configure(request)` decides, before any weight is read, what the PyTorch model loads in and
the backend's own options; `load(model, request)` makes the backend of the loaded model, with whatever it needs:
quantized or packed layers, its constructor's options with the exported graphs or built engines it runs
(`load_options`, which asks `request.artifacts` to check, find or make them), a compiled-model cache, what it says
of its precision. What else a load, a server or export asks of it is declared here: the `quantize` modes it runs
(`quantize_modes`), the model tensors it reads (`host_tensors`), the `gr00t-fast export` targets it runs (`exports`),
the prompt padding it needs (`prompt_step`) and whether a batch of prompts of different lengths gets each row's own
actions (`isolates_padding`). Nothing outside `gr00t_fast.backends` names a backend or checks a backend's class
(tests/test_architecture.py).
"""

import importlib.util
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Collection, Mapping, Sequence

import torch

from gr00t_fast.backends.names import DEFAULT_BACKEND
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.rtc import RtcRequest


STATIC_PROMPT_STEP = 32  # every instruction of 1-32 tokens (nearly all real ones) shares one compiled graph (a
# full-size compile takes minutes on a CPU); the padding costs at most 31 of the ~320 tokens of a one-camera prompt


def backend_reason(name: str) -> str:
    """Why a policy runs backend `name`: the default's rule, or the caller's choice."""
    if name != DEFAULT_BACKEND:
        return f"{name}: asked for (the default is {DEFAULT_BACKEND})"
    return (f"{name}: the default on every device and CPU class measured (no other backend is fast enough to pay for "
            "what it lacks: benchmarks/README.md, 'Which path is fastest on my CPU?')")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU): call before reading a host clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageClock:
    """Marks points of one call and measures the time between them without stalling the device:
    CUDA events on a GPU (read once the caller has synchronized), the host clock on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def elapsed_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (waits for the last CUDA event)."""
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def cuda_missing(device: torch.device) -> str | None:
    """What a CUDA-only path lacks on `device`, phrased as what it needs; None when nothing is missing."""
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + (" is a CPU-only build" if torch.version.cuda is None else " sees no GPU")
        return f"a CUDA GPU ({build})"
    if device.type != "cuda":
        return f"the model on a CUDA device (it is on {device})"
    return None


def package_missing(package: str, label: str, extra: str) -> str | None:
    """What an optional Python package's absence means, phrased as what is needed; None when it is installed."""
    if importlib.util.find_spec(package) is None:
        return f"{label} (the `{package}` Python package is not installed: pip install 'gr00t-fast[{extra}]')"
    return None


@dataclass(frozen=True)
class LoadRequest:
    """What a load asks of a backend (`load_policy`'s arguments that concern how the network runs); each backend reads
    the fields it runs with. `Backend.configure` returns it as the backend runs it, `Backend.load` makes the backend."""

    model_path: Path
    dtype: Any = "auto"  # the PyTorch model's dtype as asked; after `configure`, what the model loads in
    quantize: str | None = None  # one of the backend's `quantize_modes`
    options: Mapping[str, Any] = field(default_factory=dict)  # the backend constructor's (`backend_options`)
    backend_dir: Path | None = None  # the user's folder of exported graphs or built engines
    device_name: str | None = None  # the device as the backend's own runtime names it ("GPU.1"); None: its default
    parameters: Callable[[], int] | None = None  # the network's parameter count, from its config (the precision rule)
    artifacts: Any = None  # `gr00t_fast.export.artifacts.Artifacts`: exports checked, cached or made for the checkpoint
    decode: Callable[[torch.Tensor], dict] | None = None  # normalized actions -> {key: values}, the policy's units
    device: torch.device | None = None  # the device the model loads on, known before its weights (None: unknown)
    # (ModelInputs, noise) host float32 calls from the user's observations that `quantize` measures its activations
    # on (`Backend.calibrates`); None: synthetic scenes for int8 on a CPU, else an example call
    calibration: Sequence[tuple[Any, torch.Tensor]] | None = None

    def on_cpu(self) -> bool:
        """Whether the model loads on a CPU (unknown: where CUDA is not available)."""
        return self.device.type == "cpu" if self.device is not None else not torch.cuda.is_available()


class Backend(ABC):
    """Runs a loaded `Gr00tN15` on `ModelInputs`. Subclasses set `name` and implement `__call__`."""

    name: ClassVar[str]
    # prompts are left-padded to a multiple of this many tokens (the padding masked and isolated, `Processor`): 1 for
    # backends that take any length as it comes, STATIC_PROMPT_STEP for those that compile a graph per input shape
    # (a server batching robots pads its batches to a few row counts for them too, `serve.fleet_model`)
    prompt_step: ClassVar[int] = 1
    quantize_modes: ClassVar[tuple[str, ...]] = ()  # `load_policy(quantize=...)` values it runs
    calibrates: ClassVar[bool] = False  # its `quantize` measures activations on `LoadRequest.calibration`
    host_tensors: ClassVar[tuple[str, ...] | None] = None  # the model tensors it reads (None: the whole network)
    # the `gr00t-fast export` targets whose folders it runs (none: the checkpoint's weights); the first registered
    # backend running a target is the one export checks it with (`gr00t_fast.backends.export_runner`)
    exports: ClassVar[tuple[str, ...]] = ()
    # a batch of prompts of different lengths gets each row's own actions (the padding hidden from the action head)
    isolates_padding: ClassVar[bool] = True

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device: torch.device = model.device

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        """What this machine lacks to run the backend for a model on `device`, phrased as what the backend
        needs ("a CUDA GPU (...)"); None when it can run."""
        return None

    @classmethod
    def check_quantize(cls, quantize: str | None, on_cpu: bool) -> None:
        """ValueError, one line, no weights read, where this backend cannot run `quantize` on this machine (a model on
        its CPU where `on_cpu`): what `configure` asks too, for a command that must know before its first load or
        before a robot connects. Here: nothing (the registry refuses a mode a backend never runs)."""

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        """`request` as this backend runs it, decided before any weight is read (a bad option is refused here): the
        PyTorch model's `dtype`, the backend's own `options`. Here: the model runs as asked; a folder of exports is
        refused (this backend runs the checkpoint's weights)."""
        if request.backend_dir is not None:
            raise ValueError(f"backend_dir holds exported graphs or engines; backend {cls.name!r} runs the "
                             "checkpoint's weights")
        return request

    @classmethod
    def deferred_tensors(cls, request: LoadRequest) -> Callable[[torch.nn.Module], Collection[str]] | None:
        """The tensors the load leaves on the meta device for `load` to read itself, layer by layer (names of the
        meta model; `load_model(..., defer=...)`), so that the model is never held whole in the dtype it loads in;
        None: every tensor is read first. Here: none."""
        return None

    @classmethod
    def load(cls, model: torch.nn.Module, request: LoadRequest) -> "Backend":
        """The backend of `model` (loaded as `configure` said, holding `host_tensors`), with whatever it needs made
        first: quantized or packed layers (`model` is changed in place), exported graphs or built engines, a
        compiled-model cache, what it says of its precision. Here: the constructor with `load_options`."""
        return cls(model, **cls.load_options(model, request))

    @classmethod
    def load_options(cls, model: torch.nn.Module, request: LoadRequest) -> dict[str, Any]:
        """The constructor's options for `model`: the request's, with the folder of exports the backend runs (the
        user's, checked, else the checkpoint's, found in the cache or made there first) and its compiled-model cache.
        Here: the request's options."""
        return dict(request.options)

    @abstractmethod
    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Normalized actions (B, horizon, max_action_dim) in float32 from `noise` (B, horizon, max_action_dim)."""

    def rtc(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int,
            request: RtcRequest | Sequence[RtcRequest | None]) -> torch.Tensor:
        """Like `__call__`, the sampler continuing `request.prefix` (real-time chunking, `gr00t_fast.model.rtc`;
        one request for every row or one per row); backends that run the sampler as one compiled or exported graph
        do not support it (`supports_rtc`)."""
        from gr00t_fast.backends import without_rtc  # the registry, which imports this module

        raise ValueError(without_rtc(self.name))

    def describe(self, precision: str) -> str:
        """How the network runs here, for the load line: an exported backend's name and what its graphs or engines
        hold (`self.precision`; the model's `precision` given is only its host part's). The PyTorch backends say the
        model's own `precision` instead (its `Precision`, said whole)."""
        return f"{self.name}, {self.precision}"

    @property
    def precision(self) -> str:
        """What the network runs in here, for reports: the model's dtype (and `--quantize`'s matmuls) for the
        PyTorch backends; exported backends say what their graphs or engines hold."""
        quantized = getattr(getattr(self.model, "precision", None), "quantized", lambda: "")()
        return str(self.model.dtype).removeprefix("torch.") + (f", {quantized}" if quantized else "")

    @property
    def fallback(self) -> str | None:
        """Why this backend runs other kernels than its own, e.g. a compiled call that disagreed with the model's own
        kernels (`gr00t_fast.backends.compiled.EagerCheck`); None where it runs its own."""
        return None

    @property
    def compiles_batches_once(self) -> bool:
        """Whether the first call with a batch of 2 or more compiles anew and that one compile serves every batch
        (dynamic shapes), so that a warm-up with a batch of 2 covers a server's batches (`Gr00tPolicy.warmup`).
        Backends of static shapes compile per batch size: not warmed so."""
        return False

    @property
    def supports_rtc(self) -> bool:
        """Whether `rtc` runs here (a subclass overrides it) rather than refusing."""
        return runs_rtc(type(self))

    def stage_ms(self) -> dict[str, float]:
        """Split of the last call's model time into backbone / action_head, for backends that mark it: they set
        `self.split` to a StageClock marked at the start, at the boundary and at the end of each call."""
        split: StageClock | None = getattr(self, "split", None)
        if split is None:
            return {}
        backbone, action_head = split.elapsed_ms()
        return {"backbone": backbone, "action_head": action_head}


def runs_rtc(cls: type[Backend]) -> bool:
    """Whether backend class `cls` runs real-time chunking (it overrides `Backend.rtc`) rather than refusing it."""
    return cls.rtc is not Backend.rtc


@torch.inference_mode()
def fidelity(backend: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor], inputs: ModelInputs,
             noise: torch.Tensor, num_steps: int, decode: Callable[[torch.Tensor], dict] | None = None) -> dict:
    """Max and mean absolute action difference of `backend` against `reference` (fp32 eager) on the same call, in
    normalized units over every action dimension. `decode` (normalized actions -> {key: array}, the processor's
    unnormalization) adds "max_abs_diff_by_key": the largest difference per key in the decoded units."""
    got = backend(inputs, noise, num_steps).float().cpu()
    want = reference(inputs.to(inputs.input_ids.device, torch.float32), noise.float(), num_steps).float().cpu()
    if got.shape != want.shape:
        raise ValueError(f"backend returned actions of shape {tuple(got.shape)}, reference {tuple(want.shape)}")
    diff = (got - want).abs()
    result = {"max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item()}
    if decode is not None:
        ours, theirs = decode(got), decode(want)
        result["max_abs_diff_by_key"] = {key: float(abs(ours[key] - theirs[key]).max()) for key in theirs}
    return result
