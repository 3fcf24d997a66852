"""A running server notices its checkpoint folder changing: in a log line, never in its actions.

The loaded policy owns its weights (`gr00t_fast.model.owned_weights`), so copying another checkpoint into the
folder, truncating or deleting a shard changes nothing it computes; the operator only learns that the server
still serves the checkpoint it loaded, and that a restart is what loads the new one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("gr00t_fast.serve")

WATCHED_FOLDERS = ("", "experiment_cfg")  # the weights, config.json and the index; metadata.json
POLL_S = 2.0


def fingerprint(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime in ns, inode) of every file in the watched parts of a checkpoint folder."""
    files = {}
    for sub in WATCHED_FOLDERS:
        try:
            entries = list(os.scandir(folder / sub))
        except OSError:  # gone, or not readable: its files count as changed
            continue
        for entry in entries:
            try:
                if entry.is_file():
                    info = entry.stat()
                    files[os.path.join(sub, entry.name)] = (info.st_size, info.st_mtime_ns, info.st_ino)
            except OSError:
                continue
    return files


class CheckpointWatch:
    """Call `poll()` often (it looks at the folder every `interval_s`): it logs each new change once."""

    def __init__(self, folder: str | Path, interval_s: float = POLL_S):
        self.folder, self.interval_s = Path(folder), interval_s
        self.loaded = fingerprint(self.folder)
        self.reported: set[str] = set()
        self.next_poll = time.monotonic() + interval_s

    def changed(self) -> list[str]:
        """Files added, removed or rewritten since the policy was loaded."""
        now = fingerprint(self.folder)
        return sorted(name for name in self.loaded.keys() | now.keys() if self.loaded.get(name) != now.get(name))

    def poll(self) -> None:
        if time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + self.interval_s
        new = [name for name in self.changed() if name not in self.reported]
        if new:
            self.reported.update(new)
            shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
            log.warning("checkpoint folder %s changed since it was loaded (%s); still serving the weights loaded at "
                        "start, which the folder no longer affects: restart the server to serve the new ones",
                        self.folder, shown)
