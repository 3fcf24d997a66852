"""`ControlConfig`: how the control loop runs (`gr00t_fast.control.loop`), its modes as choice types; torch-free, so
that `gr00t-fast run --help` reads it without the loop's imports."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

from gr00t_fast.literals import literal

__all__ = ["ControlConfig", "ControlMode", "RtcMode"]

ControlMode = literal("sync", "async")  # sync (upstream: infer, then execute the chunk) or async (overlapped)
RtcMode = literal("off", "freeze", "guided", "guided-identity")  # async chunk switch: blend (off) or real-time chunking


@dataclass
class ControlConfig:
    """How the loop runs (the policy and the robot come separately)."""

    lang_instruction: str = "Place the block in the bowl"  # the task, as the policy was trained to read it
    fps: float = 30.0  # control rate in Hz: one action per period
    mode: ControlMode = "async"  # sync (upstream: infer, then execute the chunk) or async (overlapped)
    action_horizon: int = 8  # actions of each chunk that may be executed
    camera_map: dict[str, str] | None = None  # robot camera -> model video key, e.g. {front: video.webcam}
    inject_delay: float = 0.0  # artificial inference latency in seconds (tests, benchmarks)
    max_consecutive_failures: int = 5  # stop after this many failed steps in a row (each holds the last safe pose)
    bus_retries: int = 3  # retries of a joint read/write or camera frame that failed, where they fit the period
    queue_threshold: int | None = None  # async: request inference at this queue depth; None: from the latency
    rtc: RtcMode = "off"  # async: off (blend the overlap), freeze, guided or guided-identity (real-time chunking)
    rtc_beta: float = 5.0  # the guided modes' guidance weight ceiling (about the number of denoising steps)

    def __post_init__(self) -> None:
        if not self.lang_instruction.strip():
            raise ValueError("lang_instruction is empty: give the task, e.g. --lang_instruction='Pick up the cube'")
        if self.mode not in typing.get_args(ControlMode):
            raise ValueError(f"mode must be one of {typing.get_args(ControlMode)}, got {self.mode!r}")
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"fps must be a finite number > 0, got {self.fps}")
        if self.action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {self.action_horizon}")
        if self.max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be >= 1, got {self.max_consecutive_failures}")
        if self.bus_retries < 0:
            raise ValueError(f"bus_retries must be >= 0, got {self.bus_retries}")
        if not math.isfinite(self.inject_delay) or self.inject_delay < 0:
            raise ValueError(f"inject_delay must be >= 0, got {self.inject_delay}")
        if self.rtc not in typing.get_args(RtcMode):
            raise ValueError(f"rtc must be one of {typing.get_args(RtcMode)}, got {self.rtc!r}")
        if self.rtc != "off" and self.mode != "async":
            raise ValueError(f"rtc={self.rtc} needs mode=async (sync mode never overlaps chunks)")
        if not math.isfinite(self.rtc_beta) or self.rtc_beta <= 0:
            raise ValueError(f"rtc_beta must be > 0, got {self.rtc_beta}")
