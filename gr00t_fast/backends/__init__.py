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

A backend is one class that loads itself (`Backend.configure`, `Backend.load`) and one entry in `BACKENDS`
(`backends/registry.py`): `load_policy`, the fleet (`isolates_padding`, `prompt_step`, `without_rtc`) and the export
code (`export_runner`) read this registry; the commands' `--backend` choices are the built-in names of
`backends/names.py` (torch-free, held equal to the registry by a test) and any backend registered since; no module
outside this package names a backend or checks a backend's class (tests/test_architecture.py). This package resolves
its names on first use (`runtime.lazy`): importing it imports no torch.

A subclass written for an earlier release follows the contract's changes: `load(model, request)` is a classmethod
that makes the backend (an `OnnxGraphBackend`'s `load(graph)`, which loads one graph, is now `load_graph(graph)`);
`configure(dtype, quantize, parameters, device)` is `configure(request)` (the device is `request.device_name`); its
constructor's options with its exports and caches (once `artifact_option` and `cache_key`) are `load_options`; what
`settle` said of the precision, `load` says (`request.decode`); and `packs` is gone: a backend packs its layers as it
loads (`backends.pytorch.pack_model`).

The default is `torch` on every device and CPU class (`backend_reason`, in `Gr00tPolicy.timings`): measured side by
side against it (benchmarks/README.md, 2 fixed threads), `openvino` at its default precision ran 0.99x (tiny), 1.04x
(48M) and 0.97x (full size) its speed on a CPU with bf16 units, 0.84x, 1.15x and 1.29x on the same CPU capped to AVX2
(benchmarks/history.md):
nowhere the 1.5x that would pay for what it lacks (a first load that exports and compiles, real-time chunking,
isolate_padding batches, and at full size in bf16 2.4x the memory).
"""

from gr00t_fast.backends.names import BACKEND_NAMES, DEFAULT_BACKEND
from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {
    "Backend": "base", "LoadRequest": "base", "backend_reason": "base", "fidelity": "base", "synchronize": "base",
    "runs_rtc": "base",
    "BACKENDS": "registry", "BackendUnavailable": "registry", "backend_class": "registry", "export_runner": "registry",
    "make_backend": "registry", "reference_backend": "registry", "require_backend": "registry",
    "without_rtc": "registry",
    "TorchBackend": "eager", "CompiledBackend": "compiled", "CudaGraphBackend": "cuda_graph",
    "OnnxRuntimeBackend": "onnxruntime", "OpenVinoBackend": "openvino", "TensorRTBackend": "tensorrt",
}
__all__ = ["BACKEND_NAMES", "DEFAULT_BACKEND", *_HOMES]

__getattr__ = lazy_names(__name__, _HOMES)
