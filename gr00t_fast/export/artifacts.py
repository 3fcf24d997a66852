"""`ensure_artifacts`: what a backend needs on disk for a checkpoint (exported ONNX graphs, built TensorRT engines),
given, found in the cache or made into it. The one question `gr00t_fast.loading` asks of this package."""

import hashlib
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.runtime.cache import cache_dir, checkpoint_fingerprint

ARTIFACT_OPTION = {"onnxruntime": "onnx_dir", "openvino": "onnx_dir", "tensorrt": "engine_dir"}  # backend -> its
# artifact-folder option


def ensure_artifacts(backend: str, model: torch.nn.Module, model_path: str | Path, *, cameras: int,
                     backend_dir: str | Path | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor options of backend `backend` for `model` with its artifacts: `backend_dir` when given, else
    ONNX graphs exported into the cache, or TensorRT engines found there (nothing reloaded or re-exported) or built
    into it, for prompts of `cameras` images; OpenVINO's compiled-model cache in a folder keyed by the digests of the
    graphs it compiles, gr00t-fast's and OpenVINO's versions, the device and the precision. Backends without artifacts get `options` back.
    A given folder must hold a complete export of this checkpoint's weights (`manifest.check_artifacts`): another
    checkpoint's graphs, or half an export, are refused in one line."""
    options = dict(options or {})
    if backend_dir is not None:
        if backend not in ARTIFACT_OPTION:
            raise ValueError(f"backend_dir is for the backends {sorted(ARTIFACT_OPTION)}, not {backend!r}")
        options[ARTIFACT_OPTION[backend]] = backend_dir
    if options.get(ARTIFACT_OPTION.get(backend)) is not None:  # the user's folder: made from these weights, whole
        from gr00t_fast.export.manifest import check_artifacts

        check_artifacts(options[ARTIFACT_OPTION[backend]], backend, model_path)
    elif backend in ("onnxruntime", "openvino") and "onnx_dir" not in options:
        from gr00t_fast.export.onnx import cached_onnx_export

        options.update(cached_onnx_export(model, model_path))
    elif backend == "tensorrt" and "engine_dir" not in options:
        from gr00t_fast.export.tensorrt import build_engines

        precision = options.pop("precision", "bf16")  # a folder per weights: two processes never share a manifest
        folder = cache_dir() / "tensorrt" / f"{checkpoint_fingerprint(model_path)}-{cameras}cam_{precision}"
        options["engine_dir"] = build_engines(model_path, folder,
                                              cameras=cameras, precision=precision, eagle_path=model.config.eagle_dir)
    if backend == "openvino" and "cache_dir" not in options:  # compiled models and compressed weights per graphs (by
        # content), gr00t-fast, OpenVINO, device, precision
        import openvino

        from gr00t_fast import __version__
        from gr00t_fast.export.manifest import read_manifest

        files = read_manifest(options["onnx_dir"])["files"]
        graphs = hashlib.sha256("".join(f"{name}:{entry['sha256']};" for name, entry in sorted(files.items()))
                                .encode()).hexdigest()[:16]
        key = [graphs, __version__, openvino.__version__.split("-")[0], options.get("device", "CPU"),
               options.get("precision", "f32"), options.get("weights") or "fp"]
        options["cache_dir"] = cache_dir() / "openvino" / "-".join(str(k).replace(":", "_") for k in key)
    return options
