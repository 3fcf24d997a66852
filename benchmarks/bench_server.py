"""What the ZeroMQ server/client split costs over calling the policy in-process.

Local mode (default): for each model size, a random-weight checkpoint is written, the policy is loaded and served on
127.0.0.1, and for each wire format (msgpack, legacy torch.save) one SO-100 request is timed three ways, interleaved:
the direct `policy.get_action`, the full client round trip, and a round trip to a server replaying a fixed action
(the protocol alone, free of model-time noise). The four codec steps (client encodes the request, server decodes
it, server encodes the reply, client decodes it) are timed separately; transport = replay round trip - codec.

Remote mode (`--host/--port`): times round trips against any server speaking the Isaac-GR00T protocol, e.g. your
own upstream `inference_service.py --server`, plus the codec steps for the same messages.

    python benchmarks/bench_server.py --sizes tiny small --out results/
    python benchmarks/bench_server.py --host 127.0.0.1 --port 5555 --cameras video.webcam
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gr00t_fast.serve import PolicyClient, PolicyServer, protocol

FORMATS = ("msgpack", "legacy")


def so100_observation(cameras: tuple[str, ...] = ("video.webcam",), width: int = 640, height: int = 480, seed: int = 0) -> dict[str, Any]:
    """An SO-100 observation in Isaac format, as eval_lerobot.py sends it."""
    rng = np.random.default_rng(seed)
    observation: dict[str, Any] = {cam: rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8) for cam in cameras}
    observation["state.single_arm"] = rng.uniform(-90, 90, (1, 5)).astype(np.float32)
    observation["state.gripper"] = rng.uniform(0, 100, (1, 1)).astype(np.float32)
    observation["annotation.human.task_description"] = ["pick up the cube"]
    return observation


def time_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(time_ms(fn) for _ in range(repeats))


def codec_ms(observation: dict[str, Any], action: dict[str, Any], fmt: str = "msgpack", repeats: int = 20) -> dict[str, float]:
    """Median ms of the four (de)serialization steps of one get_action round trip, their sum, and the sizes."""
    pack, unpack = (protocol.pack_legacy, protocol.unpack_legacy) if fmt == "legacy" else (protocol.pack, protocol.unpack)
    request = protocol.make_request("get_action", observation)
    request_bytes, reply_bytes = pack(request), pack(action)
    steps = {
        "encode_request_ms": median_ms(lambda: pack(request), repeats),
        "decode_request_ms": median_ms(lambda: unpack(request_bytes), repeats),
        "encode_reply_ms": median_ms(lambda: pack(action), repeats),
        "decode_reply_ms": median_ms(lambda: unpack(reply_bytes), repeats),
    }
    return {**steps, "serialization_ms": sum(steps.values()),
            "request_kb": len(request_bytes) / 1024, "reply_kb": len(reply_bytes) / 1024}


class ReplayPolicy:
    """Answers every request with the same action: a server around it costs only the protocol."""

    def __init__(self, action: dict[str, Any], modality_config: dict[str, Any]):
        self.action, self.modality_config = action, modality_config

    def get_action(self, observation: dict[str, Any]) -> dict[str, Any]:
        return self.action

    def get_modality_config(self) -> dict[str, Any]:
        return self.modality_config


def server_overhead(policy: Any, observation: dict[str, Any], fmt: str, repeats: int) -> dict[str, float]:
    """Direct call vs the ZeroMQ round trip through a local server, with codec and transport split out."""
    legacy = fmt == "legacy"
    action = policy.get_action(observation)
    replay = ReplayPolicy(action, policy.get_modality_config())
    with PolicyServer(policy, port=0, allow_legacy_format=True).in_thread() as server, \
            PolicyServer(replay, port=0, allow_legacy_format=True).in_thread() as replay_server, \
            PolicyClient(port=server.port, timeout_ms=600_000, legacy_format=legacy) as client, \
            PolicyClient(port=replay_server.port, timeout_ms=600_000, legacy_format=legacy) as replay_client:
        calls = {
            "direct_ms": lambda: policy.get_action(observation),
            "round_trip_ms": lambda: client.get_action(observation),
            "protocol_round_trip_ms": lambda: replay_client.get_action(observation),
        }
        for fn in calls.values():  # warm-up
            fn()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):  # interleaved, so that drift hits all three alike
            for name, fn in calls.items():
                samples[name].append(time_ms(fn))
    row = {name: statistics.median(values) for name, values in samples.items()}
    row.update(codec_ms(observation, action, fmt, repeats))
    row["overhead_ms"] = row["round_trip_ms"] - row["direct_ms"]
    row["transport_ms"] = row["protocol_round_trip_ms"] - row["serialization_ms"]
    return row


def remote_round_trip(host: str, port: int, observation: dict[str, Any], fmt: str, repeats: int, api_token: str | None) -> dict[str, float]:
    """Round trip against a running server (any implementation) and the codec cost of the same messages."""
    with PolicyClient(host, port, timeout_ms=600_000, api_token=api_token, legacy_format=fmt == "legacy") as client:
        if not client.ping():
            raise SystemExit(f"no policy server answers at {host}:{port}")
        action = client.get_action(observation)
        row = {"round_trip_ms": median_ms(lambda: client.get_action(observation), repeats)}
    row.update(codec_ms(observation, action, fmt, repeats))
    return row


COLUMNS = [
    ("model", "{:>8}"), ("format", "{:>8}"), ("direct_ms", "{:>9.2f}"), ("round_trip_ms", "{:>10.2f}"),
    ("overhead_ms", "{:>9.2f}"), ("protocol_round_trip_ms", "{:>9.2f}"), ("serialization_ms", "{:>8.2f}"),
    ("transport_ms", "{:>9.2f}"), ("request_kb", "{:>8.0f}"), ("reply_kb", "{:>6.1f}"),
]
HEADERS = ["model", "format", "direct", "round trip", "overhead", "protocol", "codec", "transport", "req KB", "rep KB"]


def print_table(rows: list[dict[str, Any]]) -> None:
    widths = [len(fmt.format(0 if "f}" in fmt else "")) for _, fmt in COLUMNS]
    print("  ".join(h.rjust(w) for h, w in zip(HEADERS, widths)) + "   (ms, medians)")
    for row in rows:
        print("  ".join(fmt.format(row[key]) if key in row else "-".rjust(w) for (key, fmt), w in zip(COLUMNS, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "full"])
    parser.add_argument("--checkpoint", type=Path, default=None, help="benchmark this checkpoint instead of random ones")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default=None)
    parser.add_argument("--host", default=None, help="time a running server instead (any Isaac-GR00T protocol server)")
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--api-token", default=None)
    parser.add_argument("--cameras", nargs="+", default=["video.webcam"], help="video keys of the observation")
    parser.add_argument("--out", type=Path, default=None, help="write bench_server.json into this directory")
    args = parser.parse_args(argv)

    observation = so100_observation(tuple(args.cameras))
    rows: list[dict[str, Any]] = []
    if args.host:
        for fmt in args.formats:
            rows.append({"model": f"{args.host}:{args.port}", "format": fmt,
                         **remote_round_trip(args.host, args.port, observation, fmt, args.repeats, args.api_token)})
    else:
        from gr00t_fast import load_policy
        from gr00t_fast.dev.make_checkpoint import write_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            models = {"checkpoint": args.checkpoint} if args.checkpoint else {size: Path(tmp) / size for size in args.sizes}
            for name, path in models.items():
                if not args.checkpoint:
                    write_checkpoint(path, size=name, seed=0)
                policy = load_policy(path, device=args.device, warmup=True)
                for fmt in args.formats:
                    print(f"timing {name} / {fmt} ...", flush=True)
                    rows.append({"model": name, "format": fmt, **server_overhead(policy, observation, fmt, args.repeats)})
    print_table(rows)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        import zmq

        meta = {"python": sys.version.split()[0], "platform": platform.platform(), "zmq": zmq.zmq_version(),
                "cameras": args.cameras, "repeats": args.repeats}
        (args.out / "bench_server.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        print(f"wrote {args.out / 'bench_server.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
