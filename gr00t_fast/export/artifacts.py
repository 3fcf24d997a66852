"""`ensure_artifacts`: what a backend needs on disk for a checkpoint (exported ONNX graphs, built TensorRT engines),
given, found in the cache or made into it. The one question `gr00t_fast.loading` asks of this package."""

from pathlib import Path
from typing import Any

import torch

from gr00t_fast.runtime.cache import cache_dir

ARTIFACT_OPTION = {"onnxruntime": "onnx_dir", "tensorrt": "engine_dir"}  # backend -> its artifact-folder option


def ensure_artifacts(backend: str, model: torch.nn.Module, model_path: str | Path, *, cameras: int,
                     backend_dir: str | Path | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor options of backend `backend` for `model` with its artifacts: `backend_dir` when given, else
    ONNX graphs exported into the cache, or TensorRT engines found there (nothing reloaded or re-exported) or built
    into it, for prompts of `cameras` images. Backends without artifacts get `options` back."""
    options = dict(options or {})
    if backend_dir is not None:
        if backend not in ARTIFACT_OPTION:
            raise ValueError(f"backend_dir is for the backends {sorted(ARTIFACT_OPTION)}, not {backend!r}")
        options[ARTIFACT_OPTION[backend]] = backend_dir
    elif backend == "onnxruntime" and "onnx_dir" not in options:
        from gr00t_fast.export.onnx import cached_onnx_export

        options.update(cached_onnx_export(model, model_path))
    elif backend == "tensorrt" and "engine_dir" not in options:
        from gr00t_fast.export.tensorrt import build_engines

        precision = options.pop("precision", "bf16")
        options["engine_dir"] = build_engines(model_path, cache_dir() / "tensorrt" / f"{cameras}cam_{precision}",
                                              cameras=cameras, precision=precision, eagle_path=model.config.eagle_dir)
    return options
