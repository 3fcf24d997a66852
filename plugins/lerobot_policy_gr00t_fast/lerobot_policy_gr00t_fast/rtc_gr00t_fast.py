"""LeRobot's real-time chunking call (`lerobot-rollout --inference.type=rtc`) answered with gr00t-fast's RTC.

LeRobot's RTC engine hands `predict_action_chunk` the part of the previous chunk the robot has not executed yet
(`prev_chunk_left_over`, in the policy's output units: joint targets here) and the inference delay in actions.
gr00t-fast's sampler needs that plan as normalized actions. The leftover is always a tail of the chunk this
policy returned last (LeRobot drops the delayed rows and the executed ones from its front, then truncates or
zero-pads it to `--inference.rtc.execution_horizon` rows), so `ChunkPlan` finds the tail's offset in that chunk and
takes the same rows of the chunk's normalized plan (`RTC_CHUNK_KEY`): exact, with no inverse of the clipping.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gr00t_fast.model.rtc import RtcRequest

log = logging.getLogger(__name__)

DEFAULT_BETA = 5.0  # gr00t-fast's guidance ceiling when LeRobot set no RTC config on the policy


def tail_offset(chunk: Tensor, leftover: Tensor) -> int | None:
    """The row where `leftover` (chunk[offset:], truncated or zero-padded to its length) starts in `chunk`."""
    rows = leftover.shape[0]
    for offset in range(chunk.shape[0] + 1):
        tail = chunk[offset : offset + rows]
        expected = torch.zeros_like(leftover)
        expected[: tail.shape[0]] = tail
        if torch.equal(expected, leftover):
            return offset
    return None


class ChunkPlan:
    """The last chunk this policy returned (joint targets) and its normalized plan, to continue from."""

    def __init__(self) -> None:
        self.chunk: Tensor | None = None
        self.plan: np.ndarray | None = None

    def clear(self) -> None:
        self.chunk = self.plan = None

    def keep(self, chunk: Tensor, plan: np.ndarray) -> None:
        self.chunk, self.plan = chunk.detach().cpu().clone(), plan

    def request(self, mode: str, leftover: Tensor | None, inference_delay: int, rtc_config: Any) -> RtcRequest:
        """The gr00t-fast RTC request continuing `leftover` (an empty prefix, the plain sampler, when there is
        nothing to continue: the first chunk, or a leftover that is not a tail of the last chunk)."""
        beta = float(getattr(rtc_config, "max_guidance_weight", DEFAULT_BETA))
        prefix = np.zeros((0, 0 if self.plan is None else self.plan.shape[1]), np.float32)
        if leftover is not None and leftover.numel() and self.chunk is not None:
            leftover = leftover.detach().to("cpu", self.chunk.dtype).reshape(-1, self.chunk.shape[1])
            offset = tail_offset(self.chunk, leftover)
            if offset is None:
                log.warning("gr00t_fast: the RTC leftover is not a tail of the last chunk; sampling without a prefix")
            else:
                prefix = self.plan[offset : offset + leftover.shape[0]]
        return RtcRequest(mode, prefix, min(int(inference_delay), len(prefix)), beta=beta)


__all__ = ["ChunkPlan", "tail_offset"]
