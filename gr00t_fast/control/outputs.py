"""The files `gr00t-fast run` writes (`--record`, `--record_observations`, `--video`, `--plot`): each is tried for
real before the model loads and before any robot connects, so an unwritable path is one line naming its flag, never
a failure with the arm's torque on. A write that fails later (a full disk) stops that output alone: `OutputFile`
reports it once and the run goes on to its summary and disconnect.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Callable

__all__ = ["OutputFile", "output_error"]


def output_error(flag: str, path: str | Path) -> str | None:
    """Why `path` cannot be written for `flag`, or None. The file is opened for appending (made, with any missing
    folders, and removed again when it did not exist), so permissions, a folder in the way, a file where a folder
    should be and read-only file systems all show now, as the write itself would meet them."""
    path = Path(path)
    made: list[Path] = []
    try:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        existed = path.exists()
        with path.open("ab"):
            pass
        if not existed:
            made.append(path)
    except OSError as e:
        return f"{flag}: cannot write {path}: {_why(e, path)}"
    finally:
        for p in reversed(made):
            (p.unlink if p == path else p.rmdir)()
    return None


def _why(e: OSError, path: Path) -> str:
    """"permission denied", "no space left on device", ...: with the file it is about where that is not `path`."""
    about = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return (e.strerror or type(e).__name__).lower() + about


class OutputFile:
    """A text file written line by line during a run (line-buffered: what was written is on disk). The first failed
    write (e.g. no space left) is reported once, in one line naming `flag`, and every later write is skipped: the
    output stops, the run does not."""

    def __init__(self, flag: str, path: str | Path, report: Callable[[str], None] | None = None):
        self.flag, self.path = flag, Path(path)
        self.report = report or (lambda msg: print(f"gr00t-fast: {msg}", file=sys.stderr, flush=True))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("w", buffering=1)
        self.failed = False

    def write(self, text: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(text)
        except OSError as e:
            self._fail(e)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as e:  # the last buffered bytes did not fit
                self._fail(e)

    def _fail(self, e: OSError) -> None:
        self.failed = True
        self.report(f"{self.flag}: writing {self.path} failed: {_why(e, self.path)}; that output stops here, the run goes on")
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:  # the same failure again, on the buffered rest
                pass
