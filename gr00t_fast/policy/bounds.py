"""How much one request may ask of a policy: observations per request and the pixels its frames cost.

Every frame is resized to its camera's training resolution before inference, so a request of many tiny frames
costs far more than its size on the wire (a 270 KB message of 1,024 8x8 frames took a server past 7 GB). The
bounds are checked on the decoded array shapes alone, before any frame is resized or any instruction tokenized:
at most `max_batch` observations (`--max_batch`), and frames counting at least their training resolution's pixels
each within `max_pixels` (by default `max_batch` x cameras x `MAX_FRAME_PIXELS`: the largest frames accepted,
from every camera of every observation allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

MAX_FRAME_PIXELS = 4096 * 4096  # larger camera frames are refused (they only cost memory: frames become 224x224)
SERVE_MAX_BATCH = 1  # `gr00t-fast serve`: what one robot sends
IN_PROCESS_MAX_BATCH = 32  # `load_policy`: the largest batch the cuda-graph backend captures


class RequestTooLarge(ValueError):
    """A request beyond the batch or pixel bound: refused before any work is done for it."""


@dataclass(frozen=True)
class RequestBounds:
    """At most `max_batch` observations per request, and frames within `max_pixels` (None: the default budget)."""

    max_batch: int = IN_PROCESS_MAX_BATCH
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1 or (self.max_pixels is not None and self.max_pixels < 1):
            raise ValueError(f"max_batch and max_pixels must be >= 1, got {self.max_batch} and {self.max_pixels}")

    def budget(self, cameras: int) -> int:
        return self.max_pixels or self.max_batch * max(cameras, 1) * MAX_FRAME_PIXELS

    def check(self, observation: Mapping[str, Any], resized: Mapping[str, int] | None = None) -> int:
        """The observation's batch size (1 when unbatched); RequestTooLarge, one line, when it exceeds a bound.

        Looks at shapes only: video arrays `video.*` (B, T, H, W, 3) or (T, H, W, 3), each frame counted at
        `max(H * W, resized[key])` pixels (`resized`: the pixels each camera's frames are resized to; its
        cameras set the default budget, else the request's video arrays do)."""
        resized = resized or {}
        videos = {key: value for key, value in observation.items()
                  if isinstance(key, str) and key.startswith("video.") and isinstance(value, np.ndarray)
                  and value.ndim >= 3}
        batch = max((value.shape[0] if value.ndim == 5 else 1 for value in videos.values()), default=1)
        if batch > self.max_batch:
            raise RequestTooLarge(f"a batch of {batch} observations exceeds the bound of {self.max_batch} per "
                                  f"request (--max_batch)")
        pixels = sum(math.prod(value.shape[:-3]) * max(value.shape[-3] * value.shape[-2], resized.get(key, 0))
                     for key, value in videos.items())
        budget = self.budget(len(resized) or len(videos))
        if pixels > budget:
            raise RequestTooLarge(
                f"the request's frames count {pixels:,} pixels (each at least its camera's training resolution, "
                f"which it is resized to), beyond the budget of {budget:,} for a batch of at most {self.max_batch} "
                f"(--max_batch; batch {batch}, {len(videos)} camera(s))")
        return batch
