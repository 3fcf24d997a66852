"""`gr00t-fast run --video run.mp4`: the simulated camera with the joint targets beside it, one frame per step.

During the run only the simulation's state is kept at every step (a copy of its positions); the frames are rendered
after the run from those states, so the video costs the control loop nothing. Beside each frame a panel shows, per
joint, the target sent at that step (bar) and the measured position (tick) within the joint's limits; a held step
is marked in red, a chunk switch in yellow. Encoded as H.264 in MP4 (yuv420p, what browsers play) by the ffmpeg that
imageio-ffmpeg ships, at the control rate; without imageio-ffmpeg, OpenCV's MPEG-4 part 2 (`mp4v`), with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from gr00t_fast.control.telemetry import StepRecord

__all__ = ["SimVideo", "VideoEncoder", "video_error"]

PANEL_WIDTH = 240  # pixels beside the camera frame
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, GREEN, RED, YELLOW = (255, 255, 255), (90, 90, 90), (80, 200, 80), (60, 60, 230), (0, 210, 230)  # BGR


def video_error(path: str, robot: Any) -> str | None:
    """Why `--video path` cannot be written for the robot of config `robot`, or None (checked before it connects)."""
    if not robot.simulated:
        return "--video renders the simulation's camera (--robot.type=so100_sim); record a real run with --record"
    if not robot.cameras:
        return "--video needs a simulated camera; the robot has none (--robot.cameras)"
    if Path(path).suffix.lower() != ".mp4":
        return f"--video writes an MPEG-4 file: give a name ending in .mp4, got {path!r}"
    return None


class SimVideo:
    """Collects (simulation state, step record) at every step (`update`, an `on_step` callback); `write` renders and
    encodes them. `robot` is a connected `SimSO100`; `camera` one of its cameras (default: the first)."""

    def __init__(self, robot: Any, path: str | Path, fps: float, camera: str | None = None):
        self.robot, self.path, self.fps = robot, Path(path), fps
        self.camera = camera or robot.camera_names[0]
        self.joint_keys = list(robot.action_features)
        self.limits = np.array([robot.joint_limits[key] for key in self.joint_keys], dtype=np.float64)
        self.states: list[np.ndarray] = []
        self.records: list[StepRecord] = []

    def update(self, record: StepRecord) -> None:
        self.states.append(self.robot.physics_state())
        self.records.append(record)

    def write(self, progress: bool = True, cancelled: Callable[[], bool] = lambda: False) -> int:
        """Render and encode every recorded step, or those before `cancelled()` turns true (a playable file
        either way); returns the number of frames written."""
        cam = self.robot.config.cameras[self.camera]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        encoder = VideoEncoder(self.path, self.fps, (cam.width + PANEL_WIDTH, cam.height))
        frames = self.robot.replay(self.states, self.camera)
        written = 0
        try:
            for frame, record in tqdm(zip(frames, self.records), total=len(self.records), desc=f"writing {self.path}",
                                      unit="frame", disable=not progress):
                if cancelled():
                    break
                panel = cv2.cvtColor(self.panel(record, cam.height), cv2.COLOR_BGR2RGB)
                encoder.write(np.concatenate([frame, panel], axis=1))
                written += 1
        finally:
            frames.close()
            encoder.close()
        return written

    def panel(self, record: StepRecord, height: int) -> np.ndarray:
        """The joint panel of one step: a row per joint, target bar and measured tick over the joint's range."""
        panel = np.zeros((height, PANEL_WIDTH, 3), np.uint8)
        scale = min(0.45, height / 600)
        footer = int(14 * scale / 0.45)  # a legend line's height
        row = max(12, (height - 12 - 2 * footer) // (len(self.joint_keys) + 1))
        status = "HELD" if record.hold else "new chunk" if record.chunk_jump_deg is not None else ""
        cv2.putText(panel, f"step {record.step}  {record.t:5.2f} s  {status}", (6, row - 4), FONT, scale,
                    RED if record.hold else YELLOW if status else WHITE, 1, cv2.LINE_AA)
        span = PANEL_WIDTH - 12
        for line, text in enumerate(("bar: target sent, tick: measured", "joints in deg, gripper 0-100")):
            cv2.putText(panel, text, (6, height - 6 - footer * (1 - line)), FONT, scale * 0.8, WHITE, 1, cv2.LINE_AA)
        for i, key in enumerate(self.joint_keys):
            y = row * (i + 2)
            lo, hi = self.limits[i]
            target = record.action[i] if record.action else None
            cv2.putText(panel, f"{key.removesuffix('.pos')} {_value(target)}", (6, y - row // 3), FONT, scale * 0.9,
                        WHITE, 1, cv2.LINE_AA)
            cv2.rectangle(panel, (6, y - row // 4), (6 + span, y), GREY, -1)
            if target is not None:
                cv2.rectangle(panel, (6, y - row // 4), (6 + int(span * _fraction(target, lo, hi)), y),
                              RED if record.hold else GREEN, -1)
            if record.state:
                x = 6 + int(span * _fraction(record.state[i], lo, hi))
                cv2.line(panel, (x, y - row // 3), (x, y + 2), WHITE, 2)
        return panel


class VideoEncoder:
    """RGB frames of one (width, height) into an MP4 at `fps`: H.264 (yuv420p; odd sizes padded to even with black)
    through imageio-ffmpeg's ffmpeg, else OpenCV's `mp4v` with a note saying browsers will not play it."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.size, self.even = size, (size[0] + size[0] % 2, size[1] + size[1] % 2)
        try:
            import imageio_ffmpeg
        except ImportError:
            print(f"note: {path} is MPEG-4 part 2 (OpenCV's mp4v), which browsers do not play: pip install "
                  "imageio-ffmpeg for H.264", flush=True)
            self.codec, self.writer = "mp4v", cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self.writer.isOpened():
                raise OSError(f"--video: OpenCV cannot write {path}")
            return
        self.codec = "h264"
        self.writer = imageio_ffmpeg.write_frames(str(path), self.even, fps=fps, codec="libx264",
                                                  pix_fmt_out="yuv420p", macro_block_size=1,
                                                  ffmpeg_log_level="error")
        self.writer.send(None)  # starts ffmpeg

    def write(self, rgb: np.ndarray) -> None:
        if self.codec == "mp4v":
            self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return
        pad = ((0, self.even[1] - self.size[1]), (0, self.even[0] - self.size[0]), (0, 0))
        self.writer.send(np.ascontiguousarray(np.pad(rgb, pad) if any(p[1] for p in pad) else rgb))

    def close(self) -> None:
        if self.codec == "mp4v":
            self.writer.release()
        else:
            self.writer.close()


def _fraction(value: float, lo: float, hi: float) -> float:
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:7.1f}"
