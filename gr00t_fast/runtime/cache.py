"""Where gr00t-fast keeps what it generates once and reuses: demo checkpoints, exported graphs, TensorRT engines,
and what identifies a checkpoint's weights (`checkpoint_fingerprint`) so that none of it answers for other weights."""

import hashlib
import json
import os
from pathlib import Path

from gr00t_fast.runtime.atomic import write_atomic

FINGERPRINT_FILES = ("config.json", "model.safetensors.index.json")  # hashed with the weights: they shape the model
SEAL = "sha256.json"  # a cache folder's record of the files it wrote (`seal`)


def cache_dir() -> Path:
    """`$GR00T_FAST_CACHE`, default `~/.cache/gr00t_fast`."""
    return Path(os.environ.get("GR00T_FAST_CACHE") or Path.home() / ".cache" / "gr00t_fast")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered in the cache under its identity (device, inode, size, mtime and ctime):
    a file rewritten in any way, its times set back or not, changes its ctime and is hashed again."""
    stat = path.stat()
    identity = f"{os.path.realpath(path)}:{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:" \
               f"{stat.st_ctime_ns}"
    memo = cache_dir() / "digests" / hashlib.sha256(identity.encode()).hexdigest()[:32]
    try:
        return json.loads(memo.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        write_atomic(memo, json.dumps({"file": str(path), "sha256": digest}).encode())
    except OSError:  # an unwritable cache only costs the hash again next time
        pass
    return digest


def seal(folder: Path) -> None:
    """Record every file under `folder` with its sha256 (`file_digest`, hashed once per file identity) in
    `folder/sha256.json`, after the folder's owner wrote what it caches there (compiled models, compressed weights)."""
    files = {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != SEAL}
    write_atomic(folder / SEAL, json.dumps(files, indent=1).encode())


def unsealed(folder: Path) -> str | None:
    """Why `folder` holds a file that `seal` did not record as it is (added from elsewhere, replaced, changed), or
    None when every file is the one recorded (a missing one is made again by the cache's owner)."""
    try:
        listed = json.loads((folder / SEAL).read_text())
    except FileNotFoundError:
        listed = {}
    except (OSError, ValueError) as e:
        return f"its {SEAL} is unreadable ({e})"
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name != SEAL:
            if not isinstance(listed, dict) or name not in listed:
                return f"{name} was not written by this cache"
            if file_digest(path) != listed[name]:
                return f"{name} is not the file this cache wrote (replaced or copied in from another)"
    return None


def checkpoint_fingerprint(checkpoint_dir: str | Path) -> str:
    """What a checkpoint's weights are, by content: sha256 over config.json, the safetensors index and every weight
    file's bytes (each file hashed once per version, `file_digest`). Artifacts made from the checkpoint carry it."""
    path = Path(checkpoint_dir)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ValueError(f"{path} holds no *.safetensors files")
    h = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        if (path / name).is_file():
            h.update(name.encode() + (path / name).read_bytes())
    for f in weights:
        h.update(f"{f.name}:{file_digest(f)}".encode())
    return h.hexdigest()[:16]
