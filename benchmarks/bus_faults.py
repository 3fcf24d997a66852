"""The control loop on a faulty bus: LeRobot's own SOFollower and FeetechMotorsBus (run in the LeRobot environment
`.ci/lerobot_env.sh` builds) on six simulated STS3215 servos behind a pty (tests/real_lerobot/feetech_bus.py) that
leave a seeded share of their read replies unanswered from the first step on, a stand-in camera, the tiny
checkpoint; `gr00t-fast run` in-process for each drop rate: steps completed, reads retried, steps held, the loop
period's p50/p99.

    $(bash .ci/lerobot_env.sh | tail -n 1) benchmarks/bus_faults.py [--steps 150] [--fps 10]
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE / "tests" / "real_lerobot"), str(HERE / "tests")]
import torchvision_shim  # noqa: E402,F401 - LeRobot's torchvision import beside CPU torch (see there)
from feetech_bus import SimulatedFeetechBus  # noqa: E402
from stand_ins import CALIBRATION, MOTOR_IDS, REST, StandInCamera, write_calibration  # noqa: E402

from gr00t_fast.control import run  # noqa: E402
from gr00t_fast.control.telemetry import control_periods_ms, load_records  # noqa: E402
from gr00t_fast.model.provenance import PROVENANCE_FILE  # noqa: E402
from gr00t_fast.model.random_checkpoint import write_checkpoint  # noqa: E402

RATES = (0.0, 0.01, 0.05, 0.20)


def one_run(rate: float, checkpoint: Path, work: Path, steps: int, fps: int) -> dict:
    bus = SimulatedFeetechBus({MOTOR_IDS[n]: c for n, c in CALIBRATION.items()},
                              {MOTOR_IDS[n]: p for n, p in REST.items()})
    record = work / f"steps_{rate}.jsonl"

    def drop_once_running():
        while not record.exists() or not record.read_text().strip():
            time.sleep(0.01)
        SimulatedFeetechBus.answering.discard(bus.port)  # LeRobot's own 50 ms from now on (patient while connecting)
        bus.drop(rate, seed=1)

    dropping = threading.Thread(target=drop_once_running, daemon=True)
    dropping.start()
    try:
        code = run.main(["--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
                         f"--robot.calibration_dir={work / 'calibration'}",
                         "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, "
                         "warmup_s: 0}}", "--camera_map={front: video.webcam}", "--device=cpu", f"--fps={fps}",
                         f"--model_path={checkpoint}", f"--max_steps={steps}", f"--record={record}",
                         "--telemetry_interval=1000"])
    finally:
        bus.close()
    records = load_records(record)
    periods = control_periods_ms(records)
    return {"drop_rate": rate, "exit_code": code, "steps": len(records), "dropped_replies": bus.dropped,
            "retried": sum(r.retries for r in records), "held_steps": sum(r.fault == "bus" for r in records),
            "period_p50_ms": float(np.percentile(periods, 50)), "period_p99_ms": float(np.percentile(periods, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/cpu/bus_faults.json")
    args = parser.parse_args()
    from lerobot.cameras.opencv import camera_opencv
    from lerobot.motors.feetech import feetech

    camera_opencv.cv2.VideoCapture = StandInCamera
    lerobots = feetech.patch_setPacketTimeout  # as tests/real_lerobot/conftest.py: the stand-in servos (a Python

    def patient(port_handler, packet_length):  # thread) get more time while LeRobot connects
        lerobots(port_handler, packet_length)
        if port_handler.port_name in SimulatedFeetechBus.answering:
            port_handler.packet_timeout += 500.0

    feetech.patch_setPacketTimeout = patient
    work = Path(tempfile.mkdtemp())
    write_calibration(work / "calibration")
    checkpoint = write_checkpoint(work / "ckpt", progress=False)
    (checkpoint / PROVENANCE_FILE).unlink()  # stands in for a trained one: a real robot refuses random weights
    rows = [one_run(rate, checkpoint, work, args.steps, args.fps) for rate in RATES]
    flags = next((line for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    result = {"steps": args.steps, "fps": args.fps, "isa": isa, "python": platform.python_version(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nisa {isa}, {args.steps} steps at {args.fps} Hz per drop rate")
    print("drop rate  exit  steps  dropped  retried  held  period p50  period p99")
    for r in rows:
        print(f"{r['drop_rate']:>8.0%}  {r['exit_code']:>4}  {r['steps']:>5}  {r['dropped_replies']:>7}  "
              f"{r['retried']:>7}  {r['held_steps']:>4}  {r['period_p50_ms']:>7.1f} ms  {r['period_p99_ms']:>7.1f} ms")


if __name__ == "__main__":
    main()
