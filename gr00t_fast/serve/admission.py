"""Which get_action requests a server takes, and in which order it serves them.

A request is refused at arrival, in one line, when it is larger than the policy takes (`--max_batch`, checked on
the decoded shapes before any work, see `gr00t_fast.policy.bounds`), or when it could not be answered within its
budget even if served next (the inference running plus its own, from the times measured so far). Its budget is the
client's own timeout when the request carries one (`timeout_ms`; gr00t-fast's PolicyClient sends it) and
`--request_timeout_s` otherwise (15 s, the default timeout of NVIDIA's client): a queued request past it gets an
error reply and is dropped before it is computed, since its client has given up.

First come, first served while the queue drains within `STANDING_S`. Beyond that (a standing queue) the server
alternates between the newest and the oldest request, and when `--max_queue` requests already wait the oldest is
dropped with an error reply to make room: a request from a client that has just come is answered within two
inferences, even behind a burst of requests whose clients left (nothing tells those apart: they came over sockets
that are closed now), while the oldest are still served at half the rate, so that none of many live robots starves.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Mapping

from gr00t_fast.policy.bounds import SERVE_MAX_BATCH, RequestBounds

DEFAULT_MAX_QUEUE = 128  # 64 robots with one request each, and as many left by clients that timed out
STANDING_S = 1.0  # a queue that takes longer to drain stands: newest and oldest served in turn
CLIENT_MARGIN_S = 0.25  # past the client's timeout before its request counts as abandoned: the client gives up first
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
    """The queue's bound, its order, and the estimate of one inference's duration (the median of the last `WINDOW`)."""

    def __init__(self, max_queue: int, timeout_s: float, concurrency: int):
        if max_queue < 1:
            raise ValueError(f"--max_queue must be >= 1, got {max_queue}")
        self.max_queue, self.timeout_s, self.concurrency = max_queue, timeout_s, concurrency
        self.recent: deque[float] = deque(maxlen=WINDOW)  # none measured yet: nothing is refused for time
        self.newest_next = True  # a standing queue's turn

    @property
    def inference_s(self) -> float:
        return statistics.median(self.recent) if self.recent else 0.0

    def served(self, seconds: float) -> None:
        """Count one finished inference of `seconds`."""
        self.recent.append(seconds)

    def wait_s(self, ahead: int) -> float:
        """Estimated seconds until a request with `ahead` requests before it (queued or running) is answered."""
        return math.ceil((ahead + 1) / self.concurrency) * self.inference_s

    def budget_s(self, client_timeout_ms: Any) -> float:
        """A request's budget: the client's timeout (a number of ms > 0, when it sends one) and `CLIENT_MARGIN_S`, at
        most the server's."""
        if client_timeout_ms is None:
            return self.timeout_s
        if isinstance(client_timeout_ms, bool) or not isinstance(client_timeout_ms, (int, float)) \
                or not 0 < client_timeout_ms < math.inf:
            raise ValueError(f"'timeout_ms' must be a number of milliseconds > 0, got {client_timeout_ms!r}")
        return min(self.timeout_s, client_timeout_ms / 1000 + CLIENT_MARGIN_S)

    def check(self, running: int, budget_s: float) -> None:
        """Overloaded, one line, when a new request could not be answered within `budget_s` even if served next."""
        wait = self.wait_s(running)
        if wait > budget_s:
            raise Overloaded(f"server overloaded: {running} get_action requests running at ~{self.inference_s:.2f} s "
                             f"each would keep this one waiting ~{wait:.1f} s, beyond its {budget_s:g} s budget "
                             "(the client's timeout, or --request-timeout-s); retry later")

    def full(self, queued: int) -> bool:
        """Whether a new request must push out the oldest queued one."""
        return queued >= self.max_queue

    def newest_first(self, queued: int) -> bool:
        """Serve the newest queued request next rather than the oldest: in turn with the oldest while the queue
        stands (first come first served, the last of `queued` would wait beyond `STANDING_S`; before any inference
        was measured: more wait than run at once)."""
        standing = queued > self.concurrency if not self.recent else self.wait_s(queued) > STANDING_S
        if not standing:
            return False
        self.newest_next = not self.newest_next
        return not self.newest_next
