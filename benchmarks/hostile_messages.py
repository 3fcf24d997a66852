"""Decode bombs against a real `gr00t-fast serve`: what one costs the server and the robot beside it.

    python benchmarks/hostile_messages.py [--megabytes 50] [--rounds 10] [--out benchmarks/results/cpu]

An unauthenticated client sends `--rounds` bombs of each kind (`gr00t_fast.dev.hostile.decode_bomb`: nested empty
lists or maps, under the byte limit) to a server with `--api_token` and `--max_message_mb 64` (the limit the bombs
were under when issue 47 measured them), while a robot with the token calls get_action in a loop. Reports each
bomb's reply time, the server's peak RSS above its steady state, and the robot's get_action times before and during
the attack (medians and maxima, measured in this run; the attacker is a process of its own). Writes `<out>/hostile_messages.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import zmq

from gr00t_fast.dev.hostile import BOMB_KINDS, decode_bomb
from gr00t_fast.dev.served import serve
from gr00t_fast.model.random_checkpoint import cached_checkpoint
from gr00t_fast.serve import protocol

OBSERVATION = {"video.webcam": np.zeros((1, 480, 640, 3), np.uint8), "state.single_arm": np.zeros((1, 5)),
               "state.gripper": np.zeros((1, 1)), "annotation.human.task_description": ["pick up the cube"]}


def attack(port: int, megabytes: float, rounds: int, ready, results) -> None:
    """The unauthenticated client, in a process of its own: `rounds` bombs of each kind (built before `ready` is
    set), each reply timed."""
    bombs = {kind: decode_bomb(megabytes, kind) for kind in BOMB_KINDS}
    ready.set()
    attacker = zmq.Context.instance().socket(zmq.REQ)
    attacker.setsockopt(zmq.RCVTIMEO, 60_000)
    attacker.connect(f"tcp://127.0.0.1:{port}")
    replies: dict[str, list[float]] = {kind: [] for kind in BOMB_KINDS}
    errors = set()
    for _ in range(rounds):
        for kind, bomb in bombs.items():
            start = time.perf_counter()
            attacker.send(bomb, copy=False)
            errors.add(protocol.unpack(attacker.recv())["error"])
            replies[kind].append((time.perf_counter() - start) * 1e3)
    attacker.close()
    results.put(({kind: len(bomb) / 2**20 for kind, bomb in bombs.items()}, replies, sorted(errors)))


def timed_calls(robot, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        robot.get_action(OBSERVATION)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/cpu")
    args = parser.parse_args()
    checkpoint = cached_checkpoint("tiny", "tiny")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serve(checkpoint, out / "hostile_messages.log", "--max_message_mb", "64", api_token="s3cret") as served, \
            served.client(timeout_ms=15_000) as robot:
        before = timed_calls(robot, 20)
        steady_kb = served.status_kb("VmRSS")
        served.reset_peak()
        results: multiprocessing.Queue = multiprocessing.Queue()
        ready = multiprocessing.Event()
        attacker = multiprocessing.Process(target=attack, args=(served.port, args.megabytes, args.rounds, ready,
                                                                results))
        attacker.start()
        ready.wait()
        during: list[float] = []
        while attacker.is_alive() and results.empty():
            during += timed_calls(robot, 1)
        sizes, replies, errors = results.get()
        attacker.join()
        peak_mb = (served.status_kb("VmHWM") - steady_kb) / 1024
        served.stop()
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    result = {
        "message_mb": sizes,
        "bomb_reply_ms": {kind: {"median": statistics.median(t), "max": max(t)} for kind, t in replies.items()},
        "server_peak_rss_growth_mb": peak_mb,
        "robot_get_action_ms": {"before": {"median": statistics.median(before), "max": max(before)},
                                "during": {"median": statistics.median(during), "max": max(during),
                                           "calls": len(during)}},
        "errors": sorted(errors),
        "lscpu_flags": next((line.split(":", 1)[1].split() for line in flags.splitlines()
                             if line.startswith("Flags")), []),
    }
    (out / "hostile_messages.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "lscpu_flags"}, indent=2))


if __name__ == "__main__":
    main()
