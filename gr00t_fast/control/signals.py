"""SIGINT and SIGTERM while a command holds a robot: never an abort, never a disconnect cut short.

Python turns a signal into an exception wherever the main thread happens to be. Raised twice (a double Ctrl-C),
the second lands in whatever the first started, the robot's disconnect or the join of the inference thread, and the
interpreter then exits under a native torch call (`terminate called without an active exception`, SIGABRT). Here a
signal raises at most once, and only while the command sets up (connecting, loading the model: work that can take
minutes and holds nothing that a `finally` cannot release). While the loop drives, signals only ask it to stop:
the first after the current step, any later one at once (`ControlLoop.hurry`). While the robot disconnects they are
noted and nothing more.
"""

from __future__ import annotations

import signal
import sys
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gr00t_fast.control.loop import ControlLoop

__all__ = ["Interrupted", "StopSignals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal that cut a command's setup short; `code` is the exit code that reports it (128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum


def _let_go_of_locals(error: BaseException) -> None:
    """The locals of the finished frames of `error`'s traceback, and of every error it was raised from (`__cause__`)
    or while handling (`__context__`), let go (the tracebacks still print)."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]


class StopSignals:
    """A context manager over a command's whole hold on a robot, from before it connects to the last file it writes.

    Setting up (at first): the first signal raises `Interrupted` in the main thread, later ones are noted.
    `drive(loop)`: each signal asks the loop to stop (the first after the current step, the next ones at once).
    `raised`: the signal that raised during setup; set when `drive` is reached, something caught it on its way
    (a pybind11 extension interrupted while it initializes raises ImportError, which import probes catch): the
    command ends as interrupted, and `drive` stops the loop before its first step all the same.
    `hold()`: signals are only noted (the robot is being released). `finish()` (the robot is released, the run's
    files are written): a signal sets `cancelled`, which the writers check. Leaving lets go of the loop and of the
    locals of an escaping error's finished frames, and of the errors it was raised from or while handling (the
    tracebacks still print; a post-mortem debugger sees those frames without locals), then restores the handlers
    that were there before."""

    def __init__(self) -> None:
        self.signals = 0  # received so far
        self.loop: ControlLoop | None = None
        self._mode = "raise"  # "raise" (once), "drive", "hold" or "finish"
        self.cancelled = False  # a signal came after `finish()`
        self._raised: int | None = None  # the signal that raised during setup
        self._noted = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, kind: object, error: object, trace: TracebackType | None) -> None:
        # the loop and what it holds (robot, policy) freed while these handlers are still in place, also where an
        # error's traceback would keep the frames that hold them (their locals let go; the traceback still prints)
        self.loop = None
        if isinstance(error, BaseException):
            _let_go_of_locals(error)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def drive(self, loop: "ControlLoop") -> None:
        """From now on signals stop `loop` instead of raising; a signal already raised (and caught on its way) stops
        it before its first step."""
        self.loop, self._mode = loop, "drive"
        if self._raised is not None:
            loop.stop()

    @property
    def raised(self) -> int | None:
        """The signal that raised `Interrupted` during setup, if one did."""
        return self._raised

    def hold(self) -> None:
        """From now on signals are only noted: the robot is being released."""
        self._mode = "hold"

    def finish(self) -> None:
        """The robot is released: from now on a signal sets `cancelled` (the files being written stop early)."""
        self._mode, self._noted = "finish", False

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self._mode == "drive" and self.loop is not None:
            if not self.loop.stopping:
                self._say(f"{name}: stopping after the current step (again: stop at once)")
                self.loop.stop()
            elif not self.loop.hurried:
                self._say(f"{name} again: stopping at once, without waiting for the inference in flight")
                self.loop.hurry()
            return
        if self._mode == "raise" and self._raised is None:
            self._raised = signum
            raise Interrupted(signum)
        self.cancelled = self._mode == "finish"
        if not self._noted:  # once: a held-down Ctrl-C is one line
            self._noted = True
            self._say(f"{name}: " + ("stopping the files being written" if self.cancelled else
                                     "stopping before the first step" if self._mode == "raise" else
                                     "already stopping; the robot is disconnected first"))

    def _say(self, message: str) -> None:
        if self.loop is not None:
            self.loop.report(message)
        else:
            print(f"gr00t-fast: {message}", file=sys.stderr, flush=True)
