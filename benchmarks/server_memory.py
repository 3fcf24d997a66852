"""`gr00t-fast serve`'s resident memory under a flood of malformed requests and a soak of many clients.

    python benchmarks/server_memory.py [--size tiny] [--flood 36000] [--clients 32] [--requests 200] [--idle 30]

Phase 1: `--flood` malformed requests from 8 sockets (garbage bytes up to 1 MB, undecodable msgpack, observations
with wrong shapes, oversized batches), then `--idle` seconds without a request; RSS before, right after, and after
the idle time (the server gives its heap's free memory back after 2 s idle). Phase 2: `--clients` clients x
`--requests` get_action each; RSS sampled every 0.5 s, the growth over the second half of the soak. Writes
`<out>/server_memory.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from gr00t_fast.dev.served import serve
from gr00t_fast.model.random_checkpoint import cached_checkpoint
from gr00t_fast.serve import protocol


OBSERVATION = {"video.webcam": np.zeros((1, 480, 640, 3), np.uint8), "state.single_arm": np.zeros((1, 5)),
               "state.gripper": np.zeros((1, 1)), "annotation.human.task_description": ["pick up the cube"]}


def malformed(i: int, rng: np.random.Generator) -> bytes:
    """One of four kinds of bad request, by `i`."""
    kind = i % 4
    if kind == 0:  # garbage up to 1 MB
        return rng.integers(0, 256, int(rng.integers(1, 1 << 20)), dtype=np.uint8).tobytes()
    if kind == 1:  # msgpack cut short
        return protocol.pack({"endpoint": "get_action", "data": {"x": np.zeros(50_000, np.float32)}})[:-17]
    if kind == 2:  # wrong shapes
        data = {"video.webcam": np.zeros((1, 480, 640), np.uint8), "state.single_arm": np.zeros((1, 3)),
                "annotation.human.task_description": ["x"]}
        return protocol.pack(protocol.make_request("get_action", data))
    data = {"video.webcam": np.zeros((8, 1, 64, 64, 3), np.uint8), "state.single_arm": np.zeros((8, 1, 5)),
            "state.gripper": np.zeros((8, 1, 1)), "annotation.human.task_description": ["x"] * 8}  # batch of 8
    return protocol.pack(protocol.make_request("get_action", data))


def flood(port: int, count: int, sockets: int = 8) -> None:
    def sender(k: int) -> None:
        rng = np.random.default_rng(k)
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.RCVTIMEO, 30_000)
        sock.connect(f"tcp://127.0.0.1:{port}")
        for i in range(k, count, sockets):
            sock.send(malformed(i, rng))
            sock.recv()
        sock.close(linger=0)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(sockets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def soak(served, clients: int, requests: int) -> list[tuple[float, float]]:
    """(seconds, RSS MB) every 0.5 s while `clients` x `requests` get_action run."""

    def client() -> None:
        with served.client(timeout_ms=600_000) as c:
            for _ in range(requests):
                c.get_action(OBSERVATION)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start, samples = time.monotonic(), []
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - start, served.status_kb("VmRSS") / 1024))
        time.sleep(0.5)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
    parser.add_argument("--flood", type=int, default=36_000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", default="bench_out/server_memory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = cached_checkpoint(f"bench_{args.size}", args.size)
    mb = lambda: served.status_kb("VmRSS") / 1024  # noqa: E731
    with serve(checkpoint, out / "serve.log", "--device", "cpu", "--dtype", "float32") as served:
        with served.client() as c:
            for _ in range(3):
                c.get_action(OBSERVATION)
        time.sleep(3)
        start_mb = mb()
        t = time.monotonic()
        flood(served.port, args.flood)
        flood_s, after_mb = time.monotonic() - t, mb()
        time.sleep(args.idle)
        idle_mb = mb()
        print(f"flood of {args.flood} malformed requests in {flood_s:.0f} s: RSS {start_mb:.0f} -> {after_mb:.0f} MB, "
              f"{idle_mb:.0f} MB after {args.idle:g} s idle", flush=True)
        samples = soak(served, args.clients, args.requests)
    half = [mb_ for t_, mb_ in samples if t_ >= samples[-1][0] / 2]
    growth = (half[-1] - half[0]) / half[0] if len(half) > 1 else 0.0
    print(f"soak {args.clients} x {args.requests}: RSS {samples[0][1]:.0f} -> {samples[-1][1]:.0f} MB over "
          f"{samples[-1][0]:.0f} s, second half {half[0]:.0f} -> {half[-1]:.0f} MB ({growth * 100:+.1f}%)", flush=True)
    result = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "size": args.size,
              "flood": {"requests": args.flood, "seconds": flood_s, "rss_start_mb": start_mb, "rss_after_mb": after_mb,
                        "rss_after_idle_mb": idle_mb, "idle_s": args.idle},
              "soak": {"clients": args.clients, "requests": args.requests, "rss_mb": samples,
                       "second_half_growth": growth}}
    (out / "server_memory.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
