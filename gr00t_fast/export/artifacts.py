"""`Artifacts`: what a backend asks of export as it loads itself (`Backend.load`, through `LoadRequest.artifacts`):
a folder the user gave, checked; the checkpoint's ONNX graphs or TensorRT engines, found in the cache or made into it;
a folder for its compiled models, keyed by what they are compiled from; a folder for the weights it derives as it
loads (int8 layers). Which of them a backend needs is the backend's to say: nothing here names a backend."""

import hashlib
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from gr00t_fast.backends.base import Backend, LoadRequest
from gr00t_fast.runtime.cache import cache_dir, checkpoint_fingerprint, code_digest, locked

__all__ = ["Artifacts", "ensure_artifacts", "sources_digest"]


class Artifacts:
    """The artifacts of the checkpoint at `model_path`, for prompts of `cameras` images (an engine's profile)."""

    def __init__(self, model_path: str | Path, cameras: int = 1):
        self.model_path, self.cameras = Path(model_path), cameras

    def given(self, folder: str | Path, exports: tuple[str, ...], runner: str) -> Path:
        """`folder`, once it holds a complete export of this checkpoint's weights by one of the `exports` (the
        `gr00t-fast export` targets `runner` runs, `manifest.check_artifacts`): another checkpoint's graphs, or half
        an export, are refused in one line."""
        from gr00t_fast.export.manifest import check_artifacts

        check_artifacts(folder, exports, self.model_path, runner=runner)
        return Path(folder)

    def onnx(self, model: torch.nn.Module) -> tuple[Path, Callable[[int], None]]:
        """The checkpoint's fp32 ONNX graphs in the cache, exported first where they are missing (one process at a
        time), and the function that adds a sampler for another step count (`onnx.cached_onnx_export`)."""
        from gr00t_fast.export.onnx import cached_onnx_export

        return cached_onnx_export(model, self.model_path)

    def engines(self, model: torch.nn.Module, name: str, precision: str) -> Path:
        """TensorRT engines of the checkpoint in `precision` for `cameras` images, in the cache folder of backend
        `name` (one per weights and camera count), built there where one is missing, by one process at a time (a
        second one waits, then reuses them)."""
        from gr00t_fast.export.tensorrt import build_engines

        folder = cache_dir() / name / f"{checkpoint_fingerprint(self.model_path)}-{self.cameras}cam_{precision}"
        with locked(folder):
            return build_engines(self.model_path, folder, cameras=self.cameras, precision=precision,
                                 eagle_path=model.config.eagle_dir)

    def derived_weights(self, kind: str, *key: Any) -> Path:
        """The cache folder of the weights of `kind` a backend derives from the checkpoint's as it loads ("int8": the
        torch backends' int8 layers, `gr00t_fast.model.int8_cache`): keyed by the checkpoint's content
        (`checkpoint_fingerprint`), gr00t-fast's code (`code_digest`) and the backend's own `key`."""
        return cache_dir() / kind / f"{checkpoint_fingerprint(self.model_path)}-{_key_digest(key)}"

    def derived_weights_held(self, kind: str, name: str, *key: Any) -> bool:
        """Whether the cache holds a file `name` in a `derived_weights(kind, *key)` folder of any checkpoint: found
        without hashing this one (what a cache that cannot be written may still be read for)."""
        return any((cache_dir() / kind).glob(f"*-{_key_digest(key)}/{name}"))

    def compiled_cache(self, name: str, sources: str | Path, *key: str) -> Path:
        """The cache folder of backend `name`'s models compiled from the export `sources`: keyed by the digests of
        the files they are compiled from (by content), gr00t-fast's version and the backend's own `key`."""
        from gr00t_fast import __version__

        return cache_dir() / name / "-".join(str(k).replace(":", "_") for k in (sources_digest(sources), __version__,
                                                                                 *key))


def _key_digest(key: tuple) -> str:
    """A `derived_weights` key with gr00t-fast's code (`code_digest`), by content."""
    return hashlib.sha256("\0".join((code_digest(), *map(str, key))).encode()).hexdigest()[:16]


def ensure_artifacts(backend: type[Backend], model: torch.nn.Module, model_path: str | Path, *, cameras: int,
                     backend_dir: str | Path | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deprecated (goes away in the next release): a backend loads itself, `backend.load(model, request)`. The
    constructor options of `backend` for `model` with its artifacts, as a load makes them (`Backend.configure`, then
    `Backend.load_options`): `backend_dir` or the exports cached or made for prompts of `cameras` images, and a
    compiled-model cache; a folder given to a backend that runs none is refused in one line."""
    warnings.warn("gr00t_fast.export.ensure_artifacts is deprecated: a backend loads itself, "
                  "backend.load(model, LoadRequest(...)) (or its options: backend.load_options)", DeprecationWarning,
                  stacklevel=2)
    request = backend.configure(LoadRequest(Path(model_path), dtype=model.dtype, options=options or {},
                                            backend_dir=None if backend_dir is None else Path(backend_dir),
                                            artifacts=Artifacts(model_path, cameras)))
    return backend.load_options(model, request)


def sources_digest(folder: str | Path) -> str:
    """One digest of every file an export folder's manifest lists (their sha256s, checked as it was read)."""
    from gr00t_fast.export.manifest import read_manifest

    files = read_manifest(folder)["files"]
    return hashlib.sha256("".join(f"{name}:{entry['sha256']};" for name, entry in sorted(files.items()))
                          .encode()).hexdigest()[:16]
