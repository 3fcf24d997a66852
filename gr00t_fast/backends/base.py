"""Inference backends: how the network is executed (eager PyTorch now; compiled/exported ones plug in here)."""

import importlib
import time
from typing import Callable

import torch

BACKENDS: dict[str, Callable[..., "Backend"]] = {}


def register_backend(name: str):
    """Class decorator adding a backend constructor `(model, **opts)` under `name`."""

    def add(cls):
        BACKENDS[name] = cls
        return cls

    return add


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU): call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Backend:
    """Shared state of backends. Subclasses implement `__call__(input_ids, attention_mask, pixel_values, state,
    embodiment_id, noise, num_steps) -> (B, horizon, max_action_dim)` and fill `last_timings` (ms per part)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = model.device
        self.last_timings: dict[str, float] = {}

    def _sync(self) -> None:
        synchronize(self.device)


@register_backend("torch")
class TorchBackend(Backend):
    """Eager PyTorch: the model's own modules, timed per part."""

    def __call__(self, input_ids, attention_mask, pixel_values, state, embodiment_id, noise, num_steps) -> torch.Tensor:
        start = time.perf_counter()
        features = self.model.backbone(input_ids, attention_mask, pixel_values)
        self._sync()
        mid = time.perf_counter()
        actions = self.model.action_head.get_action(features, state, embodiment_id, noise, num_steps)
        self._sync()
        end = time.perf_counter()
        self.last_timings = {"backbone": (mid - start) * 1e3, "action_head": (end - mid) * 1e3}
        return actions


def make_backend(name: str, model: torch.nn.Module, **opts) -> Backend:
    """Build the backend `name` for a loaded model."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](model, **opts)


def _lazy(module: str, cls: str) -> Callable[..., Backend]:
    """Constructor imported on first use, so optional dependencies (onnxruntime, tensorrt) stay optional."""
    return lambda model, **opts: getattr(importlib.import_module(module), cls)(model, **opts)


BACKENDS.update({
    "compile": _lazy("gr00t_fast.backends.compiled", "CompiledBackend"),
    "cuda-graph": _lazy("gr00t_fast.backends.cuda_graph", "CudaGraphBackend"),
    "onnxruntime": _lazy("gr00t_fast.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": _lazy("gr00t_fast.backends.tensorrt", "TensorRTBackend"),
})
