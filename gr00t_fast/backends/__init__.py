"""Execution backends behind one contract (`gr00t_fast.backends.base.Backend`), and their registry.

| name          | runs                                                   | needs                          |
|---------------|--------------------------------------------------------|--------------------------------|
| `torch`       | the model's modules, eagerly                           | -                              |
| `compile`     | `torch.compile` of backbone and sampler                | -                              |
| `cuda-graph`  | the whole call as one CUDA graph replay                | a CUDA GPU                     |
| `onnxruntime` | exported ONNX graphs (fp32 / INT8)                     | onnxruntime                    |
| `openvino`    | exported ONNX graphs compiled by OpenVINO (f32 / bf16, INT8 weights) | openvino (+ nncf for INT8) |
| `tensorrt`    | TensorRT engines built from the ONNX graphs            | TensorRT and a CUDA GPU        |

Importing a backend's module never imports its optional dependency; `missing(device)` says what is lacking.

A backend is one class that loads itself (`Backend.configure`, `Backend.load`) and one entry in `BACKENDS`: the
commands' `--backend` choices, `load_policy`, the fleet (`isolates_padding`, `prompt_step`, `without_rtc`) and the
export code (`export_runner`) all read this registry, and no module outside this package names a backend or checks a
backend's class (tests/test_architecture.py).

A subclass written for an earlier release follows the contract's changes: `load(model, request)` is a classmethod
that makes the backend (an `OnnxGraphBackend`'s `load(graph)`, which loads one graph, is now `load_graph(graph)`);
`configure(dtype, quantize, parameters, device)` is `configure(request)` (the device is `request.device_name`); its
constructor's options with its exports and caches (once `artifact_option` and `cache_key`) are `load_options`; what
`settle` said of the precision, `load` says (`request.decode`); and `packs` is gone: a backend packs its layers as it
loads (`backends.pytorch.pack_model`).

The default is `torch` on every device and CPU class (`backend_reason`, in `Gr00tPolicy.timings`): measured side by
side against it (benchmarks/README.md, 2 fixed threads), `openvino` at its default precision ran 0.99x (tiny), 1.04x
(48M) and 0.97x (full size) its speed on a CPU with bf16 units, 0.84x, 1.15x and 1.29x on the same CPU capped to AVX2:
nowhere the 1.5x that would pay for what it lacks (a first load that exports and compiles, real-time chunking,
isolate_padding batches, and at full size in bf16 2.4x the memory).
"""

import torch

from gr00t_fast.backends.base import (DEFAULT_BACKEND, Backend, LoadRequest, backend_reason, fidelity, runs_rtc,
                                      synchronize)
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


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "BackendUnavailable", "LoadRequest", "backend_class",
           "backend_reason", "export_runner", "fidelity", "make_backend", "reference_backend", "require_backend",
           "synchronize", "without_rtc"]
