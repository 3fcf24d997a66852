"""The backend registry (`BACKENDS`: a name to its class, in the order `export_runner` reads) and what reads it;
`gr00t_fast.backends` gives these names on first use, and `gr00t_fast.backends.names` declares the same names without
importing torch."""

import torch

from gr00t_fast.backends.base import Backend, runs_rtc
from gr00t_fast.backends.compiled import CompiledBackend
from gr00t_fast.backends.cuda_graph import CudaGraphBackend
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
from gr00t_fast.backends.openvino import OpenVinoBackend
from gr00t_fast.backends.tensorrt import TensorRTBackend

# in order: the first backend running an export target (`Backend.exports`) is the one export checks it with
BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchBackend, CompiledBackend, CudaGraphBackend, OnnxRuntimeBackend, OpenVinoBackend,
                              TensorRTBackend)
}


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message names what is missing."""


def backend_class(name: str, quantize: str | None = None) -> type[Backend]:
    """The class of backend `name` (it loads itself: `Backend.configure`, `Backend.load`); ValueError for an unknown
    name, or a `quantize` mode it does not run (naming the backends that quantize)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    cls = BACKENDS[name]
    if quantize is not None and quantize not in cls.quantize_modes:
        runs = "; ".join(f"{n}: {', '.join(c.quantize_modes)}" for n, c in BACKENDS.items() if c.quantize_modes)
        raise ValueError(f"quantize={quantize!r} is not run by backend {name!r} (backends that quantize: {runs}; "
                         "exported INT8 graphs: gr00t-fast export int8)")
    return cls


def require_backend(name: str, device: torch.device) -> type[Backend]:
    """The class of backend `name`; ValueError for an unknown name, BackendUnavailable naming what this machine
    lacks for a model on `device`."""
    cls = backend_class(name)
    reason = cls.missing(device)
    if reason:
        raise BackendUnavailable(f"backend {name!r} needs {reason}")
    return cls


def make_backend(name: str, model: torch.nn.Module, **options) -> Backend:
    """Build the backend `name` for a loaded model (options go to its constructor)."""
    return require_backend(name, model.device)(model, **options)


def export_runner(target: str) -> type[Backend]:
    """The class of the backend that runs `gr00t-fast export TARGET`'s folders and that export checks them with:
    the first in `BACKENDS` whose `exports` hold `target`; ValueError for a target no backend runs."""
    runner = next((cls for cls in BACKENDS.values() if target in cls.exports), None)
    if runner is None:
        runs = sorted({t for cls in BACKENDS.values() for t in cls.exports})
        raise ValueError(f"no backend runs export target {target!r}; targets run: {', '.join(runs)}")
    return runner


def without_rtc(name: str) -> str:
    """The one line refusing real-time chunking on backend `name`, naming the registered backends that run it."""
    able = ", ".join(n for n, cls in BACKENDS.items() if runs_rtc(cls))
    return f"backend {name!r} does not support real-time chunking (rtc); use one of: {able}"


def reference_backend(model: torch.nn.Module) -> Backend:
    """The eager path of `model`, which every other backend is measured against (`fidelity`, in float32)."""
    return TorchBackend(model)

__all__ = ["BACKENDS", "BackendUnavailable", "backend_class", "export_runner", "make_backend", "reference_backend",
           "require_backend", "without_rtc"]
