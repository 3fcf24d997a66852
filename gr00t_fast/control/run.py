"""`gr00t-fast run` / `so100_inference_optimized.py`: drive a real or simulated SO-100 with GR00T from one terminal.

    gr00t-fast run --robot.type=so100_follower --robot.port=/dev/tty.usbmodem58FA0921581 --robot.id=black \\
        --robot.cameras="{ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}" \\
        --model_path=... --embodiment_tag=new_embodiment --data_config=so100 --denoising_steps=2 \\
        --lang_instruction="Place the block in the bowl" --action_horizon=8

Without `--model_path` the simulation (the default robot) runs a random-weight demo checkpoint, generated once (in
`$GR00T_FAST_CACHE`, default `~/.cache/gr00t_fast`); a real robot is refused without `--model_path`, and on any
checkpoint `make-checkpoint` generated (marked in its `gr00t_fast.json`). `--config NAME` loads a ready-made config
(`gr00t_fast.configs`; without flags: `sim_demo`), `--config_path=FILE` a YAML file; flags override either. With
`--policy_host` the same loop drives a ZeroMQ policy server. `--video` / `--plot` write the run's camera and joints.
"""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gr00t_fast.cli_args import error_line
from gr00t_fast.configs import config_names, select_config
from gr00t_fast.control.config import ControlConfig
from gr00t_fast.control.outputs import output_error
from gr00t_fast.control.signals import Interrupted, StopSignals
from gr00t_fast.runtime.interrupt import interrupt_in
from gr00t_fast.model.provenance import random_weights
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.policy.config import PolicyConfig
from gr00t_fast.policy.preflight import check_data_config, check_policy_inputs
from gr00t_fast.robot import RobotConfig, SimSO100Config, make_robot
from gr00t_fast.typed_config import config_path_in, parse_config

if TYPE_CHECKING:  # the loop, the policy and the video import torch, cv2: `run --help` reads none of them
    from gr00t_fast.control.loop import ControlLoop
    from gr00t_fast.control.telemetry import ObservationRecorder
    from gr00t_fast.control.video import SimVideo
    from gr00t_fast.policy.data_config import DataConfig
    from gr00t_fast.policy.metadata import EmbodimentMetadata

@dataclass
class RunConfig(PolicyConfig, ControlConfig):
    """The policy (`PolicyConfig`), the loop (`ControlConfig`), the robot and the run's own settings."""

    robot: RobotConfig = field(default_factory=SimSO100Config)
    duration: float | None = None  # seconds; None: until Ctrl-C or max_steps
    max_steps: int | None = None  # stop after this many steps; None: no limit
    record: str | None = None  # write every step as JSON lines here
    # keep 64 of the observations sent to the policy (a uniform sample of the run) in this .npz, the file
    # `export int8 --calibration` and `bench backends --observations` read
    record_observations: str | None = None
    video: str | None = None  # simulation: write its camera with the joint targets beside it to this .mp4
    plot: str | None = None  # draw every joint's target and measured position to this image (.png, .pdf, .svg)
    policy_host: str | None = None  # drive a ZeroMQ policy server instead of the in-process policy
    policy_port: int = 5555  # port of --policy_host
    policy_timeout_ms: int = 15000  # an answer from --policy_host later than this fails the step
    policy_legacy_format: bool = False  # talk torch.save to an older Isaac-GR00T server (June-Sept 2025)
    api_token: str | None = None  # the token --policy_host requires (its --api_token)
    robot_id: str | None = None  # this robot's name to a fleet server (its log, its counts); default: the connection
    telemetry_interval: float = 1.0  # seconds between live telemetry lines

    def __post_init__(self) -> None:
        PolicyConfig.__post_init__(self)
        ControlConfig.__post_init__(self)
        if self.max_steps is not None and self.max_steps < 0 or self.duration is not None and not 0 < self.duration < math.inf:
            raise ValueError(f"max_steps must be >= 0 and duration > 0, got {self.max_steps} and {self.duration}")
        if not 1 <= self.policy_port <= 65535 or self.policy_timeout_ms <= 0:
            raise ValueError(f"policy_port must be 1-65535 and policy_timeout_ms > 0, got {self.policy_port} and "
                             f"{self.policy_timeout_ms}")
        if not math.isfinite(self.telemetry_interval) or self.telemetry_interval < 0:
            raise ValueError(f"telemetry_interval must be a finite number >= 0, got {self.telemetry_interval}")


def demo_checkpoint() -> Path:
    """The random-weight "small" demo checkpoint for the simulation, generated on first use."""
    from gr00t_fast.model.random_checkpoint import cached_checkpoint

    return cached_checkpoint("demo_small", "small")


def unchosen_weights(cfg: RunConfig) -> str | None:
    """Why the run would drive real hardware on weights nobody chose for it, or None. A simulation may run the
    random-weight demo; a real robot runs only a checkpoint the user named and `make-checkpoint` did not write."""
    if cfg.robot.simulated or cfg.policy_host:
        return None
    where = f"--robot.type={cfg.robot.type} is a real robot"
    if not cfg.model_path:
        return (f"{where}: name its checkpoint with --model_path (the random-weight demo checkpoint drives only "
                f"--robot.type=so100_sim)")
    made = random_weights(cfg.model_path)
    if made:
        return (f"{where}, and --model_path={cfg.model_path} holds weights gr00t-fast make-checkpoint generated "
                f"({made}): give a trained checkpoint, or drive --robot.type=so100_sim")
    return None


def make_policy(cfg: RunConfig) -> Any:
    """The in-process policy, or a PolicyClient when `policy_host` is set."""
    if cfg.policy_host:
        from gr00t_fast.serve.client import PolicyClient

        return PolicyClient(cfg.policy_host, cfg.policy_port, timeout_ms=cfg.policy_timeout_ms, api_token=cfg.api_token,
                            legacy_format=cfg.policy_legacy_format, robot_id=cfg.robot_id)
    from gr00t_fast.loading import create_policy

    return create_policy(cfg, cfg.model_path or str(demo_checkpoint()), warmup=True, announce=True)


INTERRUPTED = 130  # exit code of a run stopped by Ctrl-C before it drove the robot (128 + SIGINT)


def setup_error(e: Exception | str) -> int:
    error_line("gr00t-fast run", e, join=False)  # GR00T_FAST_DEBUG=1: with the traceback
    return 2


def interrupted(doing: str, e: BaseException | None = None) -> int:
    """One line for a run a signal cut short while `doing`; the exit code is 128 + the signal (130 for Ctrl-C)."""
    if isinstance(e, Interrupted) and e.signum != signal.SIGINT:
        print(f"gr00t-fast run: stopped by {e} while {doing}", file=sys.stderr, flush=True)
        return e.code
    print(f"gr00t-fast run: interrupted while {doing}", file=sys.stderr, flush=True)
    return INTERRUPTED


def outputs_error(cfg: RunConfig) -> str | None:
    """Why one of the files the run would write cannot be (the first), or None: checked before anything loads or
    connects."""
    from gr00t_fast.control.plot import plot_error
    from gr00t_fast.control.video import video_error

    if cfg.video and (error := video_error(cfg.video, cfg.robot)):
        return error
    if cfg.plot and (error := plot_error()):
        return error
    outputs = {"--record": cfg.record, "--record_observations": cfg.record_observations, "--video": cfg.video,
               "--plot": cfg.plot}
    return next((error for flag, path in outputs.items() if path and (error := output_error(flag, path))), None)


def check_robot(robot: Any, cfg: RunConfig, config: DataConfig, metadata: EmbodimentMetadata) -> None:
    """ValueError (one line) where the robot, built but not connected, cannot serve the data config: a key without
    a joint group on it, a group of another width than the checkpoint's, joints no action commands, cameras that do
    not map onto the config's (`--camera_map`). The control loop maps it the same way once the model is loaded."""
    from gr00t_fast.policy.adapter import RobotAdapter

    dims = {key: info.width for key, info in metadata.keys.items()}
    RobotAdapter.build(robot, config, cfg.camera_map, metadata.video_resolution, dims)


def run(cfg: RunConfig) -> int:
    """Connect the robot, load the policy, warm up, drive, print the summary. Returns the exit code.

    What the checkpoint's metadata, the data config and the robot's joints and cameras can say is checked before
    either moves (`check_policy_inputs`, `check_robot`). The robot connects before the model loads: a wrong port, a
    missing calibration or a dead camera fails in seconds, not after the model. Every setup failure is one line
    (a data-config file's mistakes: one line each) and exit code 2. Once connected, the robot is disconnected
    (torque off) on every way out: an error, Ctrl-C (any number of times) or SIGTERM at any moment (`StopSignals`)."""
    if not cfg.policy_host:
        try:  # a data-config file's mistakes before a download or the demo checkpoint's generation
            check_data_config(cfg.data_config)
            if cfg.model_path:  # a Hugging Face model id: its snapshot folder from here on
                cfg.model_path = str(resolve_checkpoint(cfg.model_path, cfg.revision))
        except (ValueError, OSError) as e:  # (an id neither cached nor downloadable: HubError, a ValueError)
            return setup_error(e)
        except KeyboardInterrupt:
            return interrupted("downloading the checkpoint")
    refused = unchosen_weights(cfg)
    if refused:  # before anything connects: the arm's torque is never switched on
        return setup_error(f"refusing to drive: {refused}")
    unwritable = outputs_error(cfg)
    if unwritable:
        return setup_error(unwritable)
    inputs = None  # statistics, camera resolutions or a data config that make no sense: refused before the arm's
    if not cfg.policy_host:  # torque, and before the model loads
        try:
            inputs = check_policy_inputs(cfg.model_path or demo_checkpoint(), cfg.embodiment_tag, cfg.data_config)
            if cfg.quantize == "int8":  # a CPU that refuses int8 (no engine, or FBGEMM no faster than float32)
                from gr00t_fast.loading import check_quantize

                check_quantize("int8", cfg.device, cfg.backend)
            if cfg.calibration is not None:  # each observation through the processor: no weights, no robot yet
                from gr00t_fast.loading import check_calibration_fits

                check_calibration_fits(cfg, cfg.model_path or demo_checkpoint(), *inputs)
        except (ValueError, OSError) as e:
            return setup_error(e)
    with StopSignals() as signals:
        # the run's objects die as `hold_robot` returns, its handlers still in place: freed after them, a signal
        # would raise in whatever finalizer ran ("Exception ignored ... KeyboardInterrupt", and exit 0)
        return hold_robot(cfg, inputs, signals)


def hold_robot(cfg: RunConfig, inputs: tuple | None, signals: StopSignals) -> int:
    """Connect, drive, release and report, under `signals`; the exit code."""
    robot = None
    try:
        robot = make_robot(cfg.robot, fps=cfg.fps)
        if inputs is not None:
            check_robot(robot, cfg, *inputs)
        robot.connect()
    except (KeyboardInterrupt, ImportError, ValueError, ConnectionError, RuntimeError, OSError) as e:
        signals.hold()
        interrupt = interrupt_in(e)  # (an extension interrupted while importing raises ImportError)
        if interrupt is None:
            return setup_error(e)
        if robot is not None:  # a signal while importing the simulator or LeRobot, or connecting
            try:  # torque off whatever part of the connection was made
                robot.disconnect()
                print("robot disconnected", flush=True)
            except Exception:  # noqa: BLE001 - it was not connected (far enough to disconnect)
                pass
        return interrupted("setting up the robot", interrupt)
    try:
        code, loop, video = drive(cfg, robot, signals)
    finally:
        signals.hold()
        released = release(robot)
    if code is not None:
        return code
    signals.finish()  # the robot is released: a signal now cuts the video short
    code = report(cfg, loop, video, cancelled=lambda: signals.cancelled or loop.hurried)
    return code if released else 1


def drive(cfg: RunConfig, robot: Any, signals: StopSignals) -> tuple[int | None, ControlLoop | None, Any]:
    """Load the policy, warm up and run the loop on the connected `robot`: (exit code when it ended early, the
    loop, the video). The caller disconnects the robot, whatever happens here."""
    from gr00t_fast.control.loop import ControlLoop
    from gr00t_fast.control.telemetry import LiveTelemetry, ObservationRecorder, StepRecorder
    from gr00t_fast.control.video import SimVideo

    recorder = observations = loop = video = None
    try:
        try:
            policy = make_policy(cfg)
            video = SimVideo(robot, cfg.video, cfg.fps) if cfg.video else None
            recorder = StepRecorder(cfg.record) if cfg.record else None
            observations = ObservationRecorder(cfg.record_observations) if cfg.record_observations else None
            loop = ControlLoop(robot, policy, cfg, on_step=[LiveTelemetry(cfg.telemetry_interval).update]
                               + ([recorder.write] if recorder else []) + ([video.update] if video else []),
                               on_observation=[observations.add] if observations else [])
        except (KeyboardInterrupt, ImportError, ValueError, OSError, RuntimeError, TimeoutError) as e:
            interrupt = interrupt_in(e)
            if interrupt is not None:  # the model loads on a daemon thread: nothing waits for it (see main)
                return interrupted("loading the model", interrupt), None, None
            return setup_error(e), None, None  # checkpoint, backend, camera map, horizon, unreachable server
        signals.drive(loop)
        if signals.raised is not None:  # it raised while setting up, and something caught it on its way
            return interrupted("setting up", Interrupted(signals.raised)), loop, video
        try:
            print(f"warm-up inference on a live observation: {loop.warmup() * 1e3:.1f} ms", flush=True)
        except (RuntimeError, ValueError, OSError) as e:  # a camera, the bus or the policy failing on the first
            return setup_error(e), loop, video  # observation (OSError: LeRobot's ConnectionError, a serial failure)
        print(
            f"driving {cfg.robot.type} at {cfg.fps:g} Hz, {cfg.mode} mode, action horizon {cfg.action_horizon}, "
            f"cameras {loop.adapter.camera_map}; Ctrl-C to stop",
            flush=True,
        )
        loop.run(max_steps=cfg.max_steps, duration=cfg.duration)
        return None, loop, video
    finally:
        if recorder:
            recorder.close()
            if loop is not None and not recorder.failed:
                print(f"recorded {len(loop.records)} steps to {cfg.record}", flush=True)
        if observations:
            save_observations(observations, cfg.record_observations)


def save_observations(observations: ObservationRecorder, path: str) -> None:
    """Write `--record_observations` (one line either way: what was kept, or why it could not be written)."""
    try:
        kept = observations.close()
    except OSError as e:
        print(f"gr00t-fast run: --record_observations: cannot write {path}: {e.strerror or e}", file=sys.stderr,
              flush=True)
        return
    print(f"kept {kept} of the {observations.seen} observations sent to the policy in {path}", flush=True)


def release(robot: Any) -> bool:
    """Disconnect `robot` (torque off); a failure is one line telling the user to cut its power."""
    try:
        robot.disconnect()
    except Exception as e:  # noqa: BLE001 - whatever the driver raised, the user must hear it
        print(f"gr00t-fast run: error: disconnecting the robot failed ({type(e).__name__}: {e}): switch its power "
              "off", file=sys.stderr, flush=True)
        return False
    print("robot disconnected", flush=True)
    return True


def untrained(cfg: RunConfig) -> str | None:
    """How the in-process checkpoint's random weights were made ("random, size small, seed 0"), or None for a
    trained one, a demo-task fit (its chunks are smooth) or a policy server (its weights are not known here)."""
    if cfg.policy_host:
        return None
    made = random_weights(cfg.model_path or demo_checkpoint())
    return None if made is None or "demo_task" in made else made


def report(cfg: RunConfig, loop: ControlLoop, video: SimVideo | None,
           cancelled: Callable[[], bool] = lambda: False) -> int:
    """The summary, then the files asked for: the video (rendered now from the recorded states; `cancelled()`
    stops it early, e.g. a stop signal) and the plot."""
    from gr00t_fast.control.plot import plot_joints
    from gr00t_fast.control.telemetry import format_summary, summarize

    title = f"{cfg.mode} @ {cfg.fps:g} Hz: {loop.stop_reason}"
    print(format_summary(summarize(loop.records), title=title, random_weights=untrained(cfg),
                         remote=bool(cfg.policy_host)), flush=True)
    threads = getattr(loop.policy, "timings", {}).get("threads")  # in-process on a CPU
    if threads:
        print(f"Torch threads: {threads['mode']}, {threads['usable_cpus']} usable CPUs; the last call ran with "
              f"{threads['last']} ({threads['reason']})", flush=True)
    try:
        if video:
            frames = video.write(cancelled=cancelled)
            cut = f" (cut short by a stop signal: {len(loop.records)} steps recorded)" if frames < len(loop.records) else ""
            print(f"video of camera {video.camera!r}, joint targets beside it: {frames} frames at {cfg.fps:g} fps "
                  f"written to {cfg.video}{cut}", flush=True)
        if cfg.plot:
            plot_joints(loop.records, loop.adapter.joint_keys, cfg.plot, title=f"{cfg.robot.type}, {title}")
            print(f"joint plot written to {cfg.plot}", flush=True)
    except (OSError, ValueError) as e:  # a disk that filled up, a file type matplotlib does not know
        return setup_error(e)
    return 1 if loop.aborted else 0


DESCRIPTION = """Drive a real or simulated SO-100 with GR00T N1.5 from one terminal (also so100_inference_optimized.py).

`--config NAME` starts from a ready-made config (sim_demo, so100_follower, so100_dualcam), `--config_path=FILE` from
a YAML file of your own; with neither and no --robot.type the run is the sim_demo config. Without --model_path the
simulation runs a random-weight demo checkpoint (generated once); a real robot needs the checkpoint named. Every
flag also takes dashes (--model-path). Values are read as their setting's type: text and choices as typed
(--rtc=off, --lang_instruction=yes), numbers, booleans (true/false/yes/no/on/off), null (or ~) to unset an optional
setting, YAML for structures (--robot.cameras="{front: {type: opencv, index_or_path: 0}}")."""


def parse(argv: list[str] | None = None) -> RunConfig:
    """The flags over the config file they select (`--config NAME`, `--config_path=FILE`; neither, and no
    `--robot.type`: the sim_demo config); ValueError (naming the flag, or the config file and key) or OSError."""
    argv, config = select_config(sys.argv[1:] if argv is None else argv)
    argv = argv if config is None else [f"--config_path={config}", *argv]
    return parse_config(RunConfig, argv, "gr00t-fast run", DESCRIPTION, tuple(config_names()))


def config_path_error(argv: list[str], e: OSError) -> str | None:
    """"--config_path: no such file: <path>" when `e` is about the file that flag names, else None."""
    if e.filename is None or str(e.filename) != config_path_in(argv):
        return None
    problem = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or type(e).__name__).lower()
    return f"--config_path: {problem}: {e.filename}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse(argv)
    except (ValueError, OSError) as e:  # a bad flag or config file: one line
        return setup_error((isinstance(e, OSError) and config_path_error(argv, e)) or " ".join(str(e).split()))
    code = run(cfg)
    from gr00t_fast.runtime.torch_thread import exit_if_busy

    exit_if_busy(code)  # the robot is disconnected; a model load or an inference may still run on the torch thread
    return code


if __name__ == "__main__":
    sys.exit(main())
