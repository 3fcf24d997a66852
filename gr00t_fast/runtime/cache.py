"""Where gr00t-fast keeps what it generates once and reuses: demo checkpoints, exported graphs, TensorRT engines."""

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """`$GR00T_FAST_CACHE`, default `~/.cache/gr00t_fast`."""
    return Path(os.environ.get("GR00T_FAST_CACHE") or Path.home() / ".cache" / "gr00t_fast")


def checkpoint_fingerprint(checkpoint_dir: str | Path, content: bool = False) -> str:
    """Hash of config.json, the safetensors index and every weight file's size and mtime (or its bytes)."""
    path = Path(checkpoint_dir)
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json"):
        if (path / name).is_file():
            h.update(name.encode() + (path / name).read_bytes())
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ValueError(f"{path} holds no *.safetensors files")
    for f in weights:
        stat = f.stat()
        h.update(f"{f.name}:{stat.st_size}".encode())
        if content:
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
        else:
            h.update(str(stat.st_mtime_ns).encode())
    return h.hexdigest()[:16]
