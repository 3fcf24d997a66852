"""The control loop on a faulty bus: LeRobot's own SOFollower and FeetechMotorsBus (run in the LeRobot environment
`.ci/lerobot_env.sh` builds) on six simulated STS3215 servos behind a pty (tests/real_lerobot/feetech_bus.py), a
stand-in camera, the tiny checkpoint; `gr00t-fast run` in-process for each drop rate. Every run connects through
two pings the servos leave unanswered (connect faults: LeRobot's motor check fails, the follower tries again), then,
from the first step's action on, the servos leave a seeded share of the replies unanswered both to the step's joint
reads and to the reads LeRobot's send path makes before it writes (write faults: `max_relative_target` set, so
`send_action` reads the present position first). Per drop rate: steps completed, connect tries, replies dropped
(reads, writes), retries, steps held, and against the bound, period + one packet timeout, the p99 of the time
between step starts (the schedule) and of the time between step ends (the run summary's control period, which adds
what the slower step's own work took: an unanswered write ends its step one packet timeout after the read).

    $(bash .ci/lerobot_env.sh | tail -n 1) benchmarks/bus_faults.py [--steps 150] [--fps 10] [--rates 0 0.01 0.05 0.2]
"""

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE / "tests" / "real_lerobot"), str(HERE / "tests")]
import torchvision_shim  # noqa: E402,F401 - LeRobot's torchvision import beside CPU torch (see there)
from feetech_bus import SimulatedFeetechBus, patient  # noqa: E402
from stand_ins import CALIBRATION, MOTOR_IDS, REST, StandInCamera, write_calibration  # noqa: E402

from gr00t_fast.control import run  # noqa: E402
from gr00t_fast.control.telemetry import control_periods_ms, load_records  # noqa: E402
from gr00t_fast.model.provenance import PROVENANCE_FILE  # noqa: E402
from gr00t_fast.model.random_checkpoint import write_checkpoint  # noqa: E402

RATES = (0.0, 0.01, 0.05, 0.20)


class Tries(logging.Handler):
    """Counts the follower's "trying again" lines (one per connect try that the servos left unanswered)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "trying again" in record.getMessage()


def one_run(rate: float, checkpoint: Path, work: Path, steps: int, fps: float, tries: Tries) -> dict:
    bus = SimulatedFeetechBus({MOTOR_IDS[n]: c for n, c in CALIBRATION.items()},
                              {MOTOR_IDS[n]: p for n, p in REST.items()})
    record = work / f"steps_{rate}.jsonl"
    bus.leave_unanswered(2, "ping")  # connect faults: "Missing motor IDs: 1, 2" on the first try
    bus.drop(rate, seed=1, after_goals=1, of=("read", "write"))  # each costs LeRobot's own packet timeout
    tries.count = 0
    try:
        code = run.main(["--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
                         f"--robot.calibration_dir={work / 'calibration'}", "--robot.max_relative_target=90",
                         "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, "
                         "warmup_s: 0}}", "--camera_map={front: video.webcam}", "--device=cpu", f"--fps={fps}",
                         f"--model_path={checkpoint}", f"--max_steps={steps}", f"--record={record}",
                         "--telemetry_interval=1000"])
    finally:
        bus.close()
    records = load_records(record)
    periods = control_periods_ms(records)
    schedule = np.diff([r.t - r.loop_ms / 1e3 for r in records]) * 1e3
    return {"drop_rate": rate, "exit_code": code, "steps": len(records), "connect_tries": tries.count + 1,
            "dropped_pings": bus.dropped_by["ping"], "dropped_reads": bus.dropped_by["read"],
            "dropped_writes": bus.dropped_by["write"], "retried": sum(r.retries for r in records),
            "held_steps": sum(r.fault == "bus" for r in records),
            "schedule_p50_ms": float(np.percentile(schedule, 50)),
            "schedule_p99_ms": float(np.percentile(schedule, 99)),
            "period_p50_ms": float(np.percentile(periods, 50)), "period_p99_ms": float(np.percentile(periods, 99)),
            "period_max_ms": float(periods.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--rates", type=float, nargs="+", default=RATES, help="shares of replies dropped")
    parser.add_argument("--out", default="benchmarks/results/cpu/bus_faults.json")
    args = parser.parse_args()
    from lerobot.cameras.opencv import camera_opencv
    from lerobot.motors.feetech import feetech

    camera_opencv.cv2.VideoCapture = StandInCamera
    lerobots = feetech.patch_setPacketTimeout
    feetech.patch_setPacketTimeout = patient(lerobots)  # as tests/real_lerobot/conftest.py
    # what one unanswered joint read costs once the faults begin: LeRobot's timeout for a sync read of six positions
    port = SimpleNamespace(tx_time_per_byte=1000.0 / feetech.DEFAULT_BAUDRATE * 10.0, getCurrentTime=lambda: 0.0)
    lerobots(port, (6 + 2) * 6)
    tries = Tries()
    logging.getLogger("gr00t_fast.robot.follower").addHandler(tries)
    work = Path(tempfile.mkdtemp())
    write_calibration(work / "calibration")
    checkpoint = write_checkpoint(work / "ckpt", progress=False)
    (checkpoint / PROVENANCE_FILE).unlink()  # stands in for a trained one: a real robot refuses random weights
    rows = [one_run(rate, checkpoint, work, args.steps, args.fps, tries) for rate in args.rates]
    flags = next((line for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    period_ms = 1e3 / args.fps
    bound_ms = period_ms + port.packet_timeout
    result = {"steps": args.steps, "fps": args.fps, "packet_timeout_ms": port.packet_timeout, "bound_ms": bound_ms,
              "cpu": platform.processor() or platform.machine(), "isa": isa, "python": platform.python_version(),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nlscpu {flags}")
    print(f"isa {isa}, {args.steps} steps at {args.fps:g} Hz per drop rate; period + one packet timeout: "
          f"{period_ms:.1f} + {port.packet_timeout:.1f} = {bound_ms:.1f} ms")
    print("drop rate  exit  steps  connect tries  dropped reads/writes  retried  held  schedule p50/p99 (bound)  "
          "period p50/p99 (bound)")
    for r in rows:
        print(f"{r['drop_rate']:>8.0%}  {r['exit_code']:>4}  {r['steps']:>5}  {r['connect_tries']:>13}  "
              f"{r['dropped_reads']:>13}/{r['dropped_writes']:<6}  {r['retried']:>7}  {r['held_steps']:>4}  "
              f"{r['schedule_p50_ms']:>6.1f}/{r['schedule_p99_ms']:.1f} ms ({r['schedule_p99_ms'] <= bound_ms})  "
              f"{r['period_p50_ms']:>6.1f}/{r['period_p99_ms']:.1f} ms ({r['period_p99_ms'] <= bound_ms})")


if __name__ == "__main__":
    main()
