"""The backend contract: how the network is executed, behind one call.

    backend = make_backend("onnxruntime", model, onnx_dir=...)   # gr00t_fast.backends
    actions = backend(inputs, noise, num_steps)                  # ModelInputs -> (B, horizon, max_action_dim) fp32

Every backend subclasses `Backend`: `missing(device)` says what this machine lacks for it (None when it can run),
`__call__` runs one call, and `stage_ms()` optionally splits the last call's time into backbone / action head.
A backend compiled for static shapes sets `prompt_step`: the processor pads every prompt to a multiple of it.

What a load prepares for a backend is declared here too, so that `gr00t_fast.loading` and `gr00t_fast.export` name
no backend: the `quantize` modes it runs (`quantize_modes`), whether its Linear layers are packed (`packs`), the
model tensors it needs (`host_tensors`), the exports it runs from a folder (`exports`, `artifact_option`), its own
options from `load_policy`'s dtype and quantize (`configure`), the key of its compiled-model cache (`cache_key`),
and what it says of its precision once the policy can decode (`settle`).
"""

import importlib.util
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch

from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.rtc import RtcRequest


STATIC_PROMPT_STEP = 32  # every instruction of 1-32 tokens (nearly all real ones) shares one compiled graph (a
# full-size compile takes minutes on a CPU); the padding costs at most 31 of the ~320 tokens of a one-camera prompt


DEFAULT_BACKEND = "torch"


def backend_reason(name: str) -> str:
    """Why a policy runs backend `name`: the default's rule, or the caller's choice."""
    if name != DEFAULT_BACKEND:
        return f"{name}: asked for (the default is {DEFAULT_BACKEND})"
    return (f"{name}: the default on every device and CPU class measured (no other backend is fast enough to pay for "
            "what it lacks: benchmarks/README.md, 'The CPU backends against NVIDIA and the torch default, per CPU class')")


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


class Backend(ABC):
    """Runs a loaded `Gr00tN15` on `ModelInputs`. Subclasses set `name` and implement `__call__`."""

    name: ClassVar[str]
    # prompts are left-padded to a multiple of this many tokens (the padding masked and isolated, `Processor`): 1 for
    # backends that take any length as it comes, STATIC_PROMPT_STEP for those that compile a graph per input shape
    prompt_step: ClassVar[int] = 1
    quantize_modes: ClassVar[tuple[str, ...]] = ()  # `load_policy(quantize=...)` values it runs
    packs: ClassVar[bool] = False  # runs the model's Linear layers oneDNN-packed where that pays (`model.packed`)
    host_tensors: ClassVar[tuple[str, ...] | None] = None  # the model tensors it reads (None: the whole network)
    exports: ClassVar[tuple[str, ...]] = ()  # the `gr00t-fast export` targets it runs (none: the model's weights)
    artifact_option: ClassVar[str | None] = None  # its constructor option naming the folder of such an export

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device: torch.device = model.device

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        """What this machine lacks to run the backend for a model on `device`, phrased as what the backend
        needs ("a CUDA GPU (...)"); None when it can run."""
        return None

    @classmethod
    def configure(cls, dtype: Any, quantize: str | None, parameters: Callable[[], int], device: str
                  ) -> tuple[Any, str | None, dict[str, Any]]:
        """(the PyTorch model's dtype, its quantize mode, this backend's own options) for `load_policy`'s `dtype`,
        `quantize` (one of `quantize_modes`) and backend `device`, decided before any weight is read; `parameters()`
        counts the network's parameters from its config. Here: the model runs as asked."""
        return dtype, quantize, {}

    @classmethod
    def cache_key(cls, options: dict[str, Any]) -> list[str] | None:
        """What, besides the digests of the graphs it runs and gr00t-fast's version, keys this backend's cache of
        compiled models (None: it keeps none) for its constructor `options`."""
        return None

    def settle(self, model_path: str | Path, decode: Callable[[torch.Tensor], dict]) -> None:
        """Called once the policy can decode actions (`decode`: normalized actions -> {key: values}): a backend that
        runs another precision than the PyTorch model states it in `model.precision`. Here: nothing to state."""

    @abstractmethod
    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Normalized actions (B, horizon, max_action_dim) in float32 from `noise` (B, horizon, max_action_dim)."""

    def rtc(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int,
            request: RtcRequest | Sequence[RtcRequest | None]) -> torch.Tensor:
        """Like `__call__`, the sampler continuing `request.prefix` (real-time chunking, `gr00t_fast.model.rtc`;
        one request for every row or one per row); backends that run the sampler as one compiled or exported graph
        do not support it (`supports_rtc`)."""
        raise ValueError(f"backend {self.name!r} does not support real-time chunking (rtc); use backend 'torch'")

    @property
    def precision(self) -> str:
        """What the network runs in here, for reports: the model's dtype (and `--quantize`'s matmuls) for the
        PyTorch backends; exported backends say what their graphs or engines hold."""
        quantized = getattr(getattr(self.model, "precision", None), "quantized", lambda: "")()
        return str(self.model.dtype).removeprefix("torch.") + (f", {quantized}" if quantized else "")

    @property
    def supports_rtc(self) -> bool:
        """Whether `rtc` runs here (a subclass overrides it) rather than refusing."""
        return type(self).rtc is not Backend.rtc

    def stage_ms(self) -> dict[str, float]:
        """Split of the last call's model time into backbone / action_head, for backends that mark it: they set
        `self.split` to a StageClock marked at the start, at the boundary and at the end of each call."""
        split: StageClock | None = getattr(self, "split", None)
        if split is None:
            return {}
        backbone, action_head = split.elapsed_ms()
        return {"backbone": backbone, "action_head": action_head}


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
