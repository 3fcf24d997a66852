"""What the ZeroMQ server/client split costs over calling the policy in-process.

Per wire format (msgpack, legacy torch.save), three calls go round-robin: the direct `get_action`, the client round
trip through a loopback server, and the round trip to a server replaying a fixed action (the protocol alone). The
four codec steps (client encodes the request, server decodes it, server encodes the reply, client decodes it) are
timed on their own; transport = replay round trip - codec. With `--server HOST:PORT` the round trip goes to any
running Isaac-GR00T protocol server instead (e.g. upstream's inference_service.py).

With `--clients N`, the server under load instead: a `gr00t-fast serve` process with its default flags (and
`--threads` torch threads when given; or the server of `--server`), N concurrent clients sending `--requests` get_action each: latency p50/p99/max as the clients
see it, requests/s, and how many were refused (overloaded) or failed.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from typing import Any

import numpy as np


from gr00t_fast.dev.bench.common import (
    Bench, bench_observation, check_subset, error_text, fmt, local_server, measure, parse_address, policy_client,
    timed,
)

FORMATS = ("msgpack", "legacy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list

    parser.add_argument("--formats", type=word_list, default=list(FORMATS), help="msgpack and/or legacy")
    parser.add_argument("--server", default=None, help="HOST:PORT of a running server: time it instead")
    parser.add_argument("--api_token", default=None, help="token for --server")
    parser.add_argument("--clients", type=int, default=0, help="load test: this many concurrent clients (e.g. 64)")
    parser.add_argument("--requests", type=int, default=20, help="load test: get_action requests per client")


def check(args: argparse.Namespace) -> None:
    check_subset("--formats", args.formats, FORMATS)
    if args.clients < 0 or args.requests < 1:
        raise ValueError(f"--clients must be >= 0 and --requests >= 1, got {args.clients} and {args.requests}")


class ReplayPolicy:
    """Answers every request with the same action: a server around it costs only the protocol."""

    def __init__(self, action: dict[str, Any], modality_config: dict[str, Any]):
        self.action, self.modality_config = action, modality_config

    def get_action(self, observation: dict[str, Any]) -> dict[str, Any]:
        return self.action

    def get_modality_config(self) -> dict[str, Any]:
        return self.modality_config


def codec_ms(observation: dict[str, Any], action: dict[str, Any], fmt_name: str, reps: int) -> dict[str, float]:
    """Median ms of the four (de)serialization steps of one get_action round trip, their sum, and the sizes."""
    from gr00t_fast.serve import protocol

    pack, unpack = (protocol.pack_legacy, protocol.unpack_legacy) if fmt_name == "legacy" else (protocol.pack, protocol.unpack)
    request = protocol.make_request("get_action", observation)
    request_bytes, reply_bytes = pack(request), pack(action)
    steps = {"encode_request_ms": lambda: pack(request), "decode_request_ms": lambda: unpack(request_bytes),
             "encode_reply_ms": lambda: pack(action), "decode_reply_ms": lambda: unpack(reply_bytes)}
    medians = {name: statistics.median(timed(fn)[0] for _ in range(reps)) for name, fn in steps.items()}
    return {**medians, "codec_ms": sum(medians.values()), "request_kb": len(request_bytes) / 1024,
            "reply_kb": len(reply_bytes) / 1024}


def client_latencies(port: int, host: str, token: str | None, observation: dict[str, Any], clients: int,
                     requests: int) -> tuple[list[float], list[str], float]:
    """(seconds per answered request, error texts, wall seconds) of `clients` threads sending `requests` each."""
    latencies, errors, start = [], [], threading.Barrier(clients + 1)

    def one_client() -> None:
        with policy_client(port, host, api_token=token, timeout_ms=120_000) as client:
            start.wait()
            for _ in range(requests):
                begin = time.perf_counter()
                try:
                    client.get_action(observation)
                    latencies.append(time.perf_counter() - begin)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors.append(error_text(e))

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - begin


def run_load(bench: Bench, args: argparse.Namespace, policy: Any) -> dict[str, Any]:
    """`--clients N`: N concurrent clients against a `gr00t-fast serve` process (default flags) or `--server`."""
    from gr00t_fast.dev.served import serve

    obs = bench_observation(policy, bench.policy.seed)
    with contextlib.ExitStack() as stack:
        if args.server:
            host, port = parse_address(args.server)
        else:
            bench.out.mkdir(parents=True, exist_ok=True)
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(bench.policy).items()
                     if k not in ("model_path", "device") and v is not None] + [f"--device={policy.device}"]
            served = stack.enter_context(serve(bench.checkpoint, bench.out / "server_load.log", *flags))
            host, port = "127.0.0.1", served.port
        print(f"{args.clients} clients x {args.requests} get_action against {host}:{port}", flush=True)
        latencies, errors, wall_s = client_latencies(port, host, args.api_token, obs, args.clients, args.requests)
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    row = {"clients": args.clients, "requests": args.clients * args.requests, "answered": len(latencies),
           "overloaded": sum("overloaded" in e for e in errors), "failed": len(errors),
           "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
           "requests_per_s": len(latencies) / wall_s, "errors": errors[:5]}
    result = {**bench.header(policy.device), "server": args.server or "gr00t-fast serve (default flags)", **row}
    headers = ["Clients", "Requests", "Answered", "Overloaded", "Failed", "p50 ms", "p99 ms", "Max ms", "Requests/s"]
    table = [[row["clients"], row["requests"], row["answered"], row["overloaded"], row["failed"], fmt(row["p50_ms"]),
              fmt(row["p99_ms"]), fmt(row["max_ms"]), fmt(row["requests_per_s"], 2)]]
    bench.write(result, "Server under load", f"Checkpoint `{bench.checkpoint}`; server: {result['server']}; every "
                f"client sends the same observation, one request at a time, as fast as it is answered.",
                [(headers, table)])
    return result


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policy = bench.load()
    if args.clients:
        return run_load(bench, args, policy)
    obs = bench_observation(policy, bench.policy.seed)
    action = policy.get_action(obs)
    rows = []
    for fmt_name in args.formats:
        legacy = fmt_name == "legacy"
        with contextlib.ExitStack() as stack:
            def client(port: int, host: str = "127.0.0.1", token: str | None = None) -> Any:
                return stack.enter_context(policy_client(port, host, api_token=token, legacy_format=legacy))
            if args.server:
                host, port = parse_address(args.server)
                remote = client(port, host, args.api_token)
                calls = {"round_trip_ms": lambda: remote.get_action(obs)}
            else:
                served = stack.enter_context(local_server(policy, allow_legacy_format=True).in_thread())
                replay = ReplayPolicy(action, policy.get_modality_config())
                replayed = stack.enter_context(local_server(replay, allow_legacy_format=True).in_thread())
                to_policy, to_replay = client(served.port), client(replayed.port)
                calls = {"direct_ms": lambda: policy.get_action(obs), "round_trip_ms": lambda: to_policy.get_action(obs),
                         "protocol_round_trip_ms": lambda: to_replay.get_action(obs)}
            print(f"{fmt_name}: {len(calls)} calls round-robin", flush=True)
            measured = measure(calls, policy.device, bench.warmup, bench.reps)
        row = {"format": fmt_name, **{name: m.report()["median"] for name, m in measured.items()},
               **codec_ms(obs, action, fmt_name, bench.reps)}
        if not args.server:
            row["overhead_ms"] = row["round_trip_ms"] - row["direct_ms"]
            row["transport_ms"] = row["protocol_round_trip_ms"] - row["codec_ms"]
        rows.append(row)
    result = {**bench.header(policy.device), "server": args.server or "local", "rows": rows}
    columns = ["direct_ms", "round_trip_ms", "overhead_ms", "protocol_round_trip_ms", "codec_ms", "transport_ms",
               "request_kb", "reply_kb"]
    headers = ["Format", "Direct", "Round trip", "Overhead", "Protocol only", "Codec", "Transport", "Request KB",
               "Reply KB"]
    table = [[r["format"], *(fmt(r.get(c), 2) for c in columns)] for r in rows]
    bench.write(result, "Protocol overhead",
                f"Checkpoint `{bench.checkpoint}`; server: {result['server']}; medians in ms over {bench.reps} calls.",
                [(headers, table)])
    return result
