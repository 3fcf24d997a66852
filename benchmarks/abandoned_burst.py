"""A legitimate client right after a burst of requests whose clients left: how long until it is answered.

    python benchmarks/abandoned_burst.py [--size tiny] [--burst 200] [--denoising_steps 64] [--trials 3]

`gr00t-fast serve` (float32, `--denoising_steps`), `--burst` clients each send a get_action and close their socket
within about a second, then one client sends its own (timeout 15 s, as NVIDIA's client) and times the answer; per
trial after the server has drained. Prints and writes `<out>/abandoned_burst.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from gr00t_fast.dev.served import serve
from gr00t_fast.model.random_checkpoint import cached_checkpoint
from gr00t_fast.serve import protocol

OBSERVATION = {"video.webcam": np.zeros((1, 480, 640, 3), np.uint8), "state.single_arm": np.zeros((1, 5)),
               "state.gripper": np.zeros((1, 1)), "annotation.human.task_description": ["pick up the cube"]}


def burst(port: int, count: int) -> None:
    message = protocol.pack(protocol.make_request("get_action", OBSERVATION))
    for _ in range(count):
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 1000)  # the request leaves before the socket closes
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(message)
        sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--denoising_steps", type=int, default=64)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", default="bench_out/abandoned_burst")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = cached_checkpoint(f"bench_{args.size}", args.size)
    rows = []
    with serve(checkpoint, out / "serve.log", "--device", "cpu", "--dtype", "float32", "--denoising_steps",
               str(args.denoising_steps)) as served:
        with served.client(timeout_ms=60_000) as client:
            start = time.perf_counter()
            client.get_action(OBSERVATION)
            alone_s = time.perf_counter() - start
        for trial in range(args.trials):
            start = time.perf_counter()
            burst(served.port, args.burst)
            sent_s = time.perf_counter() - start
            with served.client(timeout_ms=15_000) as client:
                start = time.perf_counter()
                try:
                    client.get_action(OBSERVATION)
                    seconds = time.perf_counter() - start
                    answer = f"{seconds:.2f} s"
                except Exception as e:  # noqa: BLE001 - reported as the outcome
                    answer, seconds = f"{type(e).__name__}: {e}", None
            rows.append({"trial": trial, "burst_sent_s": sent_s, "answered_s": seconds, "outcome": answer})
            print(f"trial {trial}: {args.burst} abandoned requests sent in {sent_s:.2f} s; the next client: {answer} "
                  f"(one call alone: {alone_s:.2f} s)", flush=True)
            time.sleep(16)  # the burst's requests expire (15 s budget) before the next trial
    (out / "abandoned_burst.json").write_text(json.dumps(
        {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "size": args.size, "burst": args.burst,
         "denoising_steps": args.denoising_steps, "one_call_alone_s": alone_s, "trials": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
