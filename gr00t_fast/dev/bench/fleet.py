"""Many robots, one policy: the serial `gr00t-fast serve` against the Triton fleet server (`gr00t-fast fleet serve`).

Each simulated robot is a thread running its own control loop at `--fps` on its own observation (own prompt): it
executes one action per tick from its queue and, once `--chunk_steps` actions of the current chunk have run, asks
its server for the next chunk over the Isaac ZeroMQ protocol (the request runs in the background; the new chunk
replaces the queue, minus the actions whose time passed while it was computed). Per (server, robots): requests/s,
request latency p50/p99 as the robot sees it, and the share of control ticks whose queue was empty.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gr00t_fast.dev.bench.common import (
    Bench, bench_observation, check_subset, figure, fmt, local_server, policy_client, timed,
)
from gr00t_fast.serve.server import DEFAULT_REQUEST_TIMEOUT_S

SERVERS = ("serial", "fleet")
PROMPTS = ["Place the block in the bowl", "Pick up the red cube", "Stack the blue blocks on the plate, then wave",
           "Open the drawer and put the sponge inside", "Push the green button twice"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import int_list, word_list

    parser.add_argument("--robots", type=int_list, default=[1, 4, 16], help="robot counts (default: 1,4,16)")
    parser.add_argument("--servers", type=word_list, default=list(SERVERS), help="serial and/or fleet")
    parser.add_argument("--fps", type=float, default=30.0, help="each robot's control rate (default: 30)")
    parser.add_argument("--chunk_steps", type=int, default=8, help="actions executed per chunk (default: 8)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per row")
    parser.add_argument("--max_batch", type=int, default=16, help="fleet: Triton's largest batch (default: 16)")
    parser.add_argument("--max_queue_delay_ms", type=float, default=5.0, help="fleet: batching delay (default: 5)")


DEPRECATED = {"--duration_s": "--duration"}


def check(args: argparse.Namespace) -> None:
    check_subset("--servers", args.servers, SERVERS)
    if args.fps <= 0 or args.duration <= 0 or args.chunk_steps < 1:
        raise ValueError("--fps and --duration must be > 0, --chunk_steps >= 1")
    if "fleet" in args.servers:
        try:
            import pytriton  # noqa: F401
        except ImportError:
            raise ValueError('the fleet server needs PyTriton (pip install "gr00t-fast[fleet]"; or --servers serial)'
                             ) from None


class Robot:
    """One simulated robot: its control loop on the calling thread, its requests on a worker of its own."""

    def __init__(self, port: int, observation: dict[str, Any], horizon: int):
        self.client = policy_client(port)
        self.observation, self.horizon = observation, horizon
        self.worker = ThreadPoolExecutor(1)
        self.latencies_ms: list[float] = []
        self.ticks = self.empty = self.failures = 0

    def request(self) -> float:
        return timed(lambda: self.client.get_action(self.observation))[0]

    def warm_up(self, calls: int) -> None:
        for _ in range(calls):
            self.request()

    def run(self, fps: float, chunk_steps: int, measure_from: float, stop_at: float) -> None:
        queue, since_request, pending = 0, 0, self.worker.submit(self.request)
        tick = time.perf_counter()
        while tick < stop_at:
            if pending is not None and pending.done():
                try:
                    latency = pending.result()
                    queue = max(0, self.horizon - since_request)  # the actions whose time passed are skipped
                    if tick >= measure_from:
                        self.latencies_ms.append(latency)
                except Exception:  # noqa: BLE001 - counted, the robot carries on
                    self.failures += 1
                pending = None
            if tick >= measure_from:
                self.ticks += 1
                self.empty += queue == 0
            queue, since_request = max(0, queue - 1), since_request + 1
            if pending is None and self.horizon - queue >= chunk_steps:
                pending, since_request = self.worker.submit(self.request), 0
            tick += 1 / fps
            time.sleep(max(0.0, tick - time.perf_counter()))
        if pending is not None:
            pending.result()

    def close(self) -> None:
        self.worker.shutdown()
        self.client.close()


def drive(port: int, observations: list[dict[str, Any]], horizon: int, args: argparse.Namespace,
          warmup: int) -> dict[str, Any]:
    """Run len(observations) robots against the server on `port`; their pooled statistics."""
    robots = [Robot(port, obs, horizon) for obs in observations]

    def on_every_robot(method: Callable[..., None], *args: Any) -> None:
        """`method(robot, *args)` for all robots at once, each on its own thread; returns when all are done."""
        threads = [threading.Thread(target=method, args=(robot, *args)) for robot in robots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        on_every_robot(Robot.warm_up, warmup)
        settle = 2 * args.chunk_steps / args.fps  # the robots' first chunks, not measured
        start = time.perf_counter()
        on_every_robot(Robot.run, args.fps, args.chunk_steps, start + settle, start + settle + args.duration)
    finally:
        for robot in robots:
            robot.close()
    latencies = np.concatenate([r.latencies_ms for r in robots]) if robots else np.zeros(0)
    ticks = sum(r.ticks for r in robots)
    return {"robots": len(robots), "requests": int(latencies.size), "requests_per_s": latencies.size / args.duration,
            "demand_per_s": len(robots) * args.fps / args.chunk_steps,
            "p50_ms": float(np.percentile(latencies, 50)) if latencies.size else None,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies.size else None,
            "empty_queue_share": sum(r.empty for r in robots) / max(ticks, 1),
            "failures": sum(r.failures for r in robots)}


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policy = bench.load()
    policy.warmup()
    observations = [bench_observation(policy, bench.policy.seed + i, instruction=PROMPTS[i % len(PROMPTS)])
                    for i in range(max(args.robots))]
    results = []
    for server in args.servers:
        for count in args.robots:
            print(f"{server}: {count} robots ...", flush=True)
            if server == "serial":
                # `gr00t-fast serve` as it runs: its own request budget, not the benchmark's long one
                with local_server(policy, request_timeout_s=DEFAULT_REQUEST_TIMEOUT_S).in_thread() as served:
                    row = drive(served.port, observations[:count], policy.action_horizon, args, bench.warmup)
            else:
                row = run_fleet(policy, observations[:count], args, bench.warmup)
            results.append({"server": server, **row})
    result = {**bench.header(policy.device), "fps": args.fps, "chunk_steps": args.chunk_steps,
              "duration_s": args.duration, "max_batch": args.max_batch, "max_queue_delay_ms": args.max_queue_delay_ms,
              "results": results}
    headers = ["Server", "Robots", "Demand (req/s)", "Served (req/s)", "p50 (ms)", "p99 (ms)", "Empty queue",
               "Mean batch", "Failures"]
    table = [[r["server"], r["robots"], fmt(r["demand_per_s"]), fmt(r["requests_per_s"]), fmt(r["p50_ms"]),
              fmt(r["p99_ms"]), f"{r['empty_queue_share']:.1%}", fmt(r.get("mean_batch"), 2), r["failures"]]
             for r in results]
    bench.write(result, "Fleet serving", f"Checkpoint `{bench.checkpoint}`; robots at {args.fps:g} Hz, a new "
                f"chunk every {args.chunk_steps} actions, {args.duration:g} s measured per row; fleet: Triton "
                f"max batch {args.max_batch}, queue delay {args.max_queue_delay_ms:g} ms.", [(headers, table)],
                {"fleet.png": lambda path: plot(results, path)})
    return result


def run_fleet(policy: Any, observations: list[dict[str, Any]], args: argparse.Namespace, warmup: int) -> dict:
    from gr00t_fast.serve.fleet_front import FleetFront
    from gr00t_fast.serve.fleet_model import FleetModel
    from gr00t_fast.serve.triton import free_port, start_triton

    model, grpc = FleetModel(policy), free_port()
    triton = start_triton(model, max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms,
                          grpc_port=grpc, http_port=free_port(), metrics_port=free_port())
    try:
        with FleetFront(policy, f"grpc://127.0.0.1:{grpc}", concurrency=2 * args.max_batch, port=0,
                        poll_ms=20).in_thread() as front:
            row = drive(front.port, observations, policy.action_horizon, args, warmup)
    finally:
        triton.stop()
    calls = sum(model.batch_rows.values())
    return {**row, "mean_batch": sum(b * n for b, n in model.batch_rows.items()) / max(calls, 1),
            "batch_rows": dict(sorted(model.batch_rows.items()))}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 3, figsize=(13, 3.6)) as (_, axes):
        for k, server in enumerate(dict.fromkeys(r["server"] for r in results)):
            rows, color = [r for r in results if r["server"] == server], f"C{k}"
            x = [r["robots"] for r in rows]
            axes[0].plot(x, [r["requests_per_s"] for r in rows], marker="o", color=color, label=server)
            axes[1].plot(x, [r["p99_ms"] for r in rows], marker="o", color=color, label=f"{server} p99")
            axes[1].plot(x, [r["p50_ms"] for r in rows], marker=".", linestyle="--", color=color, label=f"{server} p50")
            axes[2].plot(x, [100 * r["empty_queue_share"] for r in rows], marker="o", color=color, label=server)
        axes[0].plot(x, [r["demand_per_s"] for r in rows], color="gray", linestyle=":", label="demand")
        for ax, label in zip(axes, ("requests / s served", "request latency (ms)", "ticks with an empty queue (%)")):
            ax.set(xlabel="robots", xticks=x, ylabel=label, ylim=(0, None))
            ax.legend(fontsize=8)
