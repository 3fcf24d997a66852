"""Which get_action requests a server takes: within the policy's batch and pixel bounds, and answerable in time.

A request is refused at arrival, in one line, when it is larger than the policy takes (`--max_batch`, checked on
the decoded shapes before any work, see `gr00t_fast.policy.bounds`), when `--max_queue` requests already wait, or
when the requests ahead of it could not all be served before its `--request-timeout-s` budget runs out (estimated
from the inference times measured so far). Everything else waits in the queue, as NVIDIA's server lets it:
NVIDIA's clients raise on an error reply, so a fleet that works against `inference_service.py` must not be turned
away merely for being many.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Mapping

from gr00t_fast.policy.bounds import SERVE_MAX_BATCH, RequestBounds

DEFAULT_MAX_QUEUE = 128  # 64 robots with one request each, and as many left by clients that timed out
WINDOW = 32  # inference times the estimate is the median of (a few slow ones, e.g. a busy machine, do not count)


class Overloaded(RuntimeError):
    """The server cannot take this request now (a full queue, or no answer possible within the budget)."""


class ShuttingDown(RuntimeError):
    """The server is stopping: it answers the requests it has, and takes no new one."""


def request_rows(policy: Any, observation: Mapping[str, Any]) -> int:
    """The observations `observation` holds, checked against the policy's bounds (its processor's, else
    `RequestBounds(SERVE_MAX_BATCH)`): RequestTooLarge, one line, beyond them."""
    processor = getattr(policy, "processor", None)
    bounds = getattr(processor, "bounds", None)
    if bounds is None:
        return RequestBounds(SERVE_MAX_BATCH).check(observation)
    return bounds.check(observation, processor.resized_pixels)


class Admission:
    """The queue's bound and the estimate of one inference's duration (the median of the last `WINDOW`)."""

    def __init__(self, max_queue: int, timeout_s: float, concurrency: int):
        if max_queue < 1:
            raise ValueError(f"--max_queue must be >= 1, got {max_queue}")
        self.max_queue, self.timeout_s, self.concurrency = max_queue, timeout_s, concurrency
        self.recent: deque[float] = deque(maxlen=WINDOW)  # none measured yet: nothing is refused for time

    @property
    def inference_s(self) -> float:
        return statistics.median(self.recent) if self.recent else 0.0

    def served(self, seconds: float) -> None:
        """Count one finished inference of `seconds`."""
        self.recent.append(seconds)

    def wait_s(self, ahead: int) -> float:
        """Estimated seconds until a request with `ahead` requests before it (queued or running) is answered."""
        return math.ceil((ahead + 1) / self.concurrency) * self.inference_s

    def check(self, queued: int, running: int) -> None:
        """Overloaded, one line, when a new request cannot be queued or answered in time."""
        if queued >= self.max_queue:
            raise Overloaded(f"server overloaded: {queued} get_action requests already queued, the bound "
                             f"(--max_queue {self.max_queue}); retry later")
        wait = self.wait_s(queued + running)
        if wait > self.timeout_s:
            raise Overloaded(f"server overloaded: {queued + running} get_action requests ahead of this one at "
                             f"~{self.inference_s:.2f} s each would keep it waiting ~{wait:.0f} s, beyond the "
                             f"{self.timeout_s:g} s budget (--request-timeout-s); retry later")
