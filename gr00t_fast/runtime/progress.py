"""Progress for long work whose steps take long (a 2 GB shard written in one call, a graph exported in one call) or
that has no steps at all (a first compiled call): a tqdm bar whose elapsed time a background thread redraws every
second, so that the line keeps moving while one step runs. Work with quick steps uses `tqdm` directly."""

import contextlib
import threading
from typing import Iterator

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "redrawn", "ticking"]

LOG_INTERVAL_S = 30.0  # redraws into a file or pipe


@contextlib.contextmanager
def redrawn(bar: tqdm, interval_s: float = 1.0) -> Iterator[tqdm]:
    """Redraw `bar` every `interval_s` while the block runs (its elapsed time moves during a long step), then close
    it; every `LOG_INTERVAL_S` where its stream is not a terminal (a log file gets no line per second). A disabled
    bar is only closed."""
    stop = threading.Event()
    terminal = getattr(getattr(bar, "fp", None), "isatty", lambda: False)()  # a disabled bar has no stream
    interval = interval_s if terminal else max(interval_s, LOG_INTERVAL_S)

    def redraw() -> None:
        while not stop.wait(interval):
            bar.refresh()

    thread = None if bar.disable else threading.Thread(target=redraw, name="gr00t-progress", daemon=True)
    if thread:
        thread.start()
    try:
        yield bar
    finally:
        stop.set()
        if thread:
            thread.join()
        bar.close()


@contextlib.contextmanager
def ticking(desc: str, enabled: bool = True, interval_s: float = 1.0) -> Iterator[None]:
    """Show `desc: <elapsed>` on stderr, redrawn every `interval_s`, while the block runs (nothing when disabled)."""
    with redrawn(tqdm(desc=desc, bar_format="{desc}: {elapsed}", disable=not enabled), interval_s):
        yield
