"""`gr00t-fast run` / `so100_inference_optimized.py`: drive a real or simulated SO-100 with GR00T from one terminal.

    gr00t-fast run --robot.type=so100_follower --robot.port=/dev/tty.usbmodem58FA0921581 --robot.id=black \\
        --robot.cameras="{ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}" \\
        --model_path=... --embodiment_tag=new_embodiment --data_config=so100 --denoising_steps=2 \\
        --lang_instruction="Place the block in the bowl" --action_horizon=8

Without `--model_path` a random-weight demo checkpoint is generated once (in `$GR00T_FAST_CACHE`, default
`~/.cache/gr00t_fast`); the default robot is the built-in simulation. `--config_path=configs/sim_demo.yaml` loads a
YAML config that the flags then override. With `--policy_host` the same loop drives a ZeroMQ policy server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import draccus

from gr00t_fast.control.loop import ControlConfig, ControlLoop, stop_on_signals
from gr00t_fast.robot import RobotConfig, SimSO100Config, make_robot
from gr00t_fast.control.telemetry import LiveTelemetry, StepRecorder, format_summary, summarize


@dataclass
class RunConfig:
    robot: RobotConfig = field(default_factory=SimSO100Config)
    model_path: str = ""  # checkpoint dir; empty: the generated demo checkpoint
    embodiment_tag: str = "new_embodiment"
    data_config: str = "so100"
    denoising_steps: int | None = None  # None: the checkpoint's (4)
    lang_instruction: str = "Place the block in the bowl"
    action_horizon: int = 8  # actions executed from each predicted chunk
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str | None = None  # float32 / bfloat16 / float16; None: the policy's default for the device
    backend: str = "torch"  # torch, compile, cuda-graph, onnxruntime, tensorrt
    backend_dir: str | None = None  # onnxruntime: exported ONNX graphs; tensorrt: built engines (gr00t-fast export)
    quantize: str | None = None  # int8 / fp8 matmuls in the transformer stacks (torch, compile, cuda-graph)
    eagle_path: str | None = None
    fps: int = 30  # control rate
    mode: str = "async"  # async (overlapped inference) or sync (upstream: infer, then execute the chunk)
    duration: float | None = None  # seconds; None: until Ctrl-C or max_steps
    max_steps: int | None = None
    camera_map: dict[str, str] | None = None  # robot camera -> model video key, e.g. {front: video.webcam}
    queue_threshold: int | None = None  # async: queue depth that triggers inference; None: from the latency
    record: str | None = None  # write every step as JSON lines here
    seed: int = 0  # seeds the policy's denoising noise (the simulated scene has its own --robot.seed)
    inject_delay: float = 0.0  # artificial inference latency in seconds
    max_consecutive_failures: int = 5
    policy_host: str | None = None  # drive a ZeroMQ policy server instead of the in-process policy
    policy_port: int = 5555
    policy_timeout_ms: int = 15000
    api_token: str | None = None
    telemetry_interval: float = 1.0  # seconds between live telemetry lines


def demo_checkpoint() -> Path:
    """The random-weight "small" demo checkpoint, generated on first use."""
    from gr00t_fast.dev.make_checkpoint import cached_checkpoint

    return cached_checkpoint("demo_small", "small")


def make_policy(cfg: RunConfig) -> Any:
    """The in-process policy, or a PolicyClient when `policy_host` is set."""
    if cfg.policy_host:
        from gr00t_fast.serve.client import PolicyClient

        return PolicyClient(cfg.policy_host, cfg.policy_port, timeout_ms=cfg.policy_timeout_ms, api_token=cfg.api_token)
    from gr00t_fast.policy.policy import cli_load_options, load_policy

    model_path = cfg.model_path or demo_checkpoint()
    print(f"loading {model_path} ...", flush=True)
    return load_policy(**cli_load_options(cfg, model_path), warmup=True)


def control_config(cfg: RunConfig) -> ControlConfig:
    return ControlConfig(
        instruction=cfg.lang_instruction,
        fps=cfg.fps,
        mode=cfg.mode,
        action_horizon=cfg.action_horizon,
        camera_map=cfg.camera_map,
        max_relative_target=cfg.robot.max_relative_target,
        inject_delay=cfg.inject_delay,
        max_consecutive_failures=cfg.max_consecutive_failures,
        queue_threshold=cfg.queue_threshold,
    )


def setup_error(e: Exception) -> int:
    print(f"gr00t-fast run: error: {e}", file=sys.stderr)
    return 2


def run(cfg: RunConfig) -> int:
    """Build everything, warm up, drive the robot, print the summary. Returns the exit code."""
    try:
        control = control_config(cfg)
        robot = make_robot(cfg.robot, fps=cfg.fps)  # before the model loads: a missing extra fails fast
        policy = make_policy(cfg)
    except (ImportError, ValueError, FileNotFoundError) as e:
        return setup_error(e)
    if hasattr(policy, "generator"):  # in-process: seed the denoising noise of every chunk
        policy.generator.manual_seed(cfg.seed)
    robot.connect()
    recorder = StepRecorder(cfg.record) if cfg.record else None
    live = LiveTelemetry(cfg.telemetry_interval)
    try:
        try:
            loop = ControlLoop(robot, policy, control, on_step=[live.update] + ([recorder.write] if recorder else []))
        except (ValueError, TimeoutError) as e:  # camera map, action horizon, unreachable policy server
            return setup_error(e)
        with stop_on_signals(loop):
            print(f"warm-up inference on a live observation: {loop.warmup() * 1e3:.1f} ms", flush=True)
            print(
                f"driving {cfg.robot.type} at {cfg.fps} Hz, {cfg.mode} mode, action horizon {cfg.action_horizon}, "
                f"cameras {loop.camera_map}; Ctrl-C to stop",
                flush=True,
            )
            loop.run(max_steps=cfg.max_steps, duration=cfg.duration)
    finally:
        robot.disconnect()
        if recorder:
            recorder.close()
    print(format_summary(summarize(loop.records), title=f"{cfg.mode} @ {cfg.fps} Hz: {loop.stop_reason}"), flush=True)
    if recorder:
        print(f"recorded {len(loop.records)} steps to {cfg.record}")
    print("robot disconnected", flush=True)
    return 1 if loop.aborted else 0


def parse(argv: list[str] | None = None) -> RunConfig:
    return draccus.parse(RunConfig, args=sys.argv[1:] if argv is None else argv, prog="gr00t-fast run")


def main(argv: list[str] | None = None) -> int:
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
