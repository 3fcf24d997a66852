"""Where gr00t-fast keeps what it generates once and reuses: demo checkpoints, exported graphs, TensorRT engines,
compiled models, and what identifies a checkpoint's weights (`checkpoint_fingerprint`) so that none of it answers for
other weights. A cache folder is made by one process at a time (`locked`: two processes loading the same fresh
checkpoint at once never read or remove what the other is writing); one that records the files it holds (`sealed`)
serves no file it did not write."""

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from gr00t_fast.runtime.atomic import write_atomic
from gr00t_fast.runtime.progress import ticking

log = logging.getLogger(__name__)

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


_LOCKS: dict[str, FileLock] = {}  # one per lock file: the thread holding it may take it again


@contextlib.contextmanager
def locked(folder: str | Path) -> Iterator[Path]:
    """`folder` for this process alone while the block runs: a file lock (`filelock`, as huggingface_hub locks its
    downloads) on `.NAME.lock` beside it. The thread holding it may take it again; another process or thread waits
    until it is released, its wait shown on stderr. Yields `folder`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = str(folder.with_name(f".{folder.name}.lock"))
    lock = _LOCKS.setdefault(path, FileLock(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        with ticking(f"waiting for another process writing {folder}"):
            lock.acquire()
    try:
        yield folder
    finally:
        lock.release()


@contextlib.contextmanager
def sealed(folder: str | Path) -> Iterator[Path]:
    """Write into the cache folder `folder` (`locked` while the block runs): a folder holding a file that `seal` did
    not record as it is (`unsealed`: added from elsewhere, replaced, changed, or left by a write that never finished)
    is named in one warning and emptied first; what the block wrote is recorded after it (`seal`). Yields `folder`."""
    with locked(folder) as folder:
        reason = unsealed(folder)
        if reason is not None:
            log.warning("cache %s: %s; made again", folder, reason)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        seal(folder)


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


@functools.cache
def code_digest() -> str:
    """What gr00t-fast's code is, by content: sha256 over every Python file of the package (its name and bytes), once
    per process. What a cache made by running the code (int8 layers fitted at load) is keyed by: any change of the code
    or of a constant in it makes the cache anew."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
