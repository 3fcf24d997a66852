"""`ensure_artifacts`: what a backend needs on disk for a checkpoint (exported ONNX graphs, built TensorRT engines),
given, found in the cache or made into it. The one question `gr00t_fast.loading` asks of this package; what a
backend runs, and how its compiled-model cache is keyed, the backend declares (`Backend.exports`,
`artifact_option`, `cache_key`): nothing here names a backend."""

import hashlib
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.backends.base import Backend
from gr00t_fast.runtime.cache import cache_dir, checkpoint_fingerprint


def ensure_artifacts(backend: type[Backend], model: torch.nn.Module, model_path: str | Path, *, cameras: int,
                     backend_dir: str | Path | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor options of `backend` for `model` with its artifacts: `backend_dir` when given, else ONNX
    graphs exported into the cache, or TensorRT engines found there (nothing reloaded or re-exported) or built into
    it, for prompts of `cameras` images; a compiled-model cache (`cache_dir`, for a backend with a `cache_key`) in a
    folder keyed by the digests of the files it compiles, gr00t-fast's version and the backend's key. Backends
    without artifacts get `options` back. A given folder must hold a complete export of this checkpoint's weights
    (`manifest.check_artifacts`): another checkpoint's graphs, or half an export, are refused in one line."""
    options, option = dict(options or {}), backend.artifact_option
    if backend_dir is not None:
        if option is None:
            raise ValueError(f"backend_dir holds exported graphs or engines; backend {backend.name!r} runs the "
                             "checkpoint's weights")
        options[option] = backend_dir
    if option is None:
        return options
    if options.get(option) is not None:  # the user's folder: made from these weights, whole
        from gr00t_fast.export.manifest import check_artifacts

        check_artifacts(options[option], backend.exports, model_path, runner=f"backend {backend.name!r}")
    elif "onnx" in backend.exports:
        from gr00t_fast.export.onnx import cached_onnx_export

        options.update(cached_onnx_export(model, model_path))
    else:  # engines
        from gr00t_fast.export.tensorrt import build_engines

        precision = options.pop("precision", "bf16")  # a folder per weights: two processes never share a manifest
        folder = cache_dir() / backend.name / f"{checkpoint_fingerprint(model_path)}-{cameras}cam_{precision}"
        options[option] = build_engines(model_path, folder, cameras=cameras, precision=precision,
                                        eagle_path=model.config.eagle_dir)
    key = backend.cache_key(options)
    if key is not None and "cache_dir" not in options:  # compiled models per source files (by content), gr00t-fast
        from gr00t_fast import __version__

        options["cache_dir"] = cache_dir() / backend.name / "-".join(
            str(k).replace(":", "_") for k in (sources_digest(options[option]), __version__, *key))
    return options


def sources_digest(folder: str | Path) -> str:
    """One digest of every file an export folder's manifest lists (their sha256s, checked as it was read)."""
    from gr00t_fast.export.manifest import read_manifest

    files = read_manifest(folder)["files"]
    return hashlib.sha256("".join(f"{name}:{entry['sha256']};" for name, entry in sorted(files.items()))
                          .encode()).hexdigest()[:16]
