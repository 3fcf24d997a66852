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

The default is `torch` on every device and CPU class (`backend_reason`, in `Gr00tPolicy.timings`): measured side by
side against it (benchmarks/README.md, 2 fixed threads), `openvino` at its default precision ran 0.99x (tiny), 1.04x
(48M) and 0.97x (full size) its speed on a CPU with bf16 units, 0.84x, 1.15x and 1.29x on the same CPU capped to AVX2:
nowhere the 1.5x that would pay for what it lacks (a first load that exports and compiles, real-time chunking,
isolate_padding batches, and at full size in bf16 2.4x the memory).
"""

import torch

from gr00t_fast.backends.base import DEFAULT_BACKEND, Backend, backend_reason, fidelity, synchronize
from gr00t_fast.backends.compiled import CompiledBackend
from gr00t_fast.backends.cuda_graph import CudaGraphBackend
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
from gr00t_fast.backends.openvino import OpenVinoBackend
from gr00t_fast.backends.tensorrt import TensorRTBackend

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchBackend, CompiledBackend, CudaGraphBackend, OnnxRuntimeBackend, OpenVinoBackend,
                              TensorRTBackend)
}


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message names what is missing."""


def backend_class(name: str) -> type[Backend]:
    """The class of backend `name` (what a load prepares for it is declared there); ValueError for an unknown name."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


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


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "BackendUnavailable", "backend_class", "backend_reason", "fidelity",
           "make_backend", "require_backend", "synchronize"]
