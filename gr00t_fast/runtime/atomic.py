"""Writes that are whole or absent: a folder staged beside its target and renamed into place (`staged`), a file
written beside itself and renamed over the old one (`write_atomic`). A run killed at any point leaves the previous
contents in place; its staging folder, named with its process id, is removed by the next run beside it."""

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["recover", "scratch", "staged", "write_atomic"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _leftovers(path: Path, kind: str) -> list[tuple[Path, int]]:
    """`.NAME.KIND<pid>` folders beside `path` whose process is gone (a killed run's)."""
    found = []
    for entry in path.parent.glob(f".{path.name}.{kind}*"):
        pid = entry.name.removeprefix(f".{path.name}.{kind}")
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            found.append((entry, int(pid)))
    return found


def recover(path: Path) -> None:
    """Clean up after killed runs beside `path`: their staging folders are removed, and a previous version moved
    aside for a replacement that never arrived is moved back."""
    for old, _ in _leftovers(path, "old"):
        if not path.exists():
            os.replace(old, path)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp, _ in _leftovers(path, "tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch(path: Path) -> Iterator[Path]:
    """A fresh folder beside `path` (`.NAME.tmp<pid>`), removed when the block ends however it ends; killed runs'
    leftovers beside `path` are cleaned up first (`recover`)."""
    path = Path(path)
    recover(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged(path: Path, replace: bool = False) -> Iterator[Path]:
    """A fresh folder beside `path` to write into (`scratch`), renamed to `path` when the block completes and removed
    when it fails or is interrupted: `path` holds the whole result or what it held before. With `replace`, an
    existing `path` is swapped out for the new folder (moved aside, the new one renamed in, the old one removed);
    without, the rename's OSError (`path` appeared meanwhile and is not empty) propagates."""
    path = Path(path)
    with scratch(path) as tmp:
        yield tmp
        if replace and path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a file beside it renamed over `path`: readers see the old or the new bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
