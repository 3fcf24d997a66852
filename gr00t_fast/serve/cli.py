"""The command line of both servers: `gr00t-fast serve` (one policy, the Isaac-GR00T ZeroMQ protocol, or with
`--protocol lerobot` LeRobot's async inference over gRPC: `gr00t_fast.serve.lerobot_grpc`) and `gr00t-fast fleet
serve` (one policy for many robots: Triton with dynamic batching, the ZeroMQ protocol in front). Both bind their
sockets before the model loads and answer a bad flag, checkpoint or address in one line (exit 2)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Callable

from gr00t_fast.cli_args import ArgumentParser, non_negative, port, positive, token
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.policy.bounds import SERVE_MAX_BATCH
from gr00t_fast.policy.config import add_policy_arguments, policy_config_from_args
from gr00t_fast.policy.preflight import check_policy_inputs
from gr00t_fast.runtime.interrupt import raised_by_interrupt
from gr00t_fast.serve import protocol
from gr00t_fast.serve.admission import DEFAULT_MAX_QUEUE
from gr00t_fast.serve.server import (DEFAULT_GRACE_S, DEFAULT_MAX_MESSAGE_MB, DEFAULT_REQUEST_TIMEOUT_S, PolicyServer,
                                     is_loopback)
from gr00t_fast.serve.watch import CheckpointWatch
from gr00t_fast.typed_config import camera_map

__all__ = ["add_load_arguments", "check_load_arguments", "fleet_main", "fleet_parser", "serve_main",
           "serve_parser"]

PROTOCOLS = {"zmq": 5555, "lerobot": 8080}  # --protocol -> its default port
# the flags only one protocol reads: set with the other, they are refused rather than ignored
PROTOCOL_FLAGS = {"zmq": ("request_timeout_s", "max_batch", "max_queue", "allow_legacy_format"),
                  "lerobot": ("camera_map", "fps")}

log = logging.getLogger("gr00t_fast.fleet")


def serve_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="gr00t-fast serve",
        description="Serve a GR00T N1.5 policy over the Isaac-GR00T ZeroMQ protocol (drop-in for "
        "scripts/inference_service.py --server), or with --protocol lerobot to LeRobot's async inference "
        "robot_client (gRPC). Every flag also takes dashes (--model-path).",
    )
    add_policy_arguments(parser, required_model=False)
    add = parser.add_argument
    add("--protocol", choices=sorted(PROTOCOLS), default="zmq", help="zmq: Isaac-GR00T's ZeroMQ protocol (needs "
        "--model_path); lerobot: LeRobot's async inference (its robot_client names the checkpoint, unless "
        "--model_path fixes it; the queue flags below are the ZeroMQ server's)")
    add("--port", type=port, default=None, help="TCP port (0: any free one; default: 5555, with --protocol lerobot "
        "8080)")
    add("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for every interface)")
    add("--api_token", type=token, default=None, help="require this token in every request (without it, a server "
        "bound to a public address says so once)")
    add("--max_message_mb", type=positive, default=DEFAULT_MAX_MESSAGE_MB, help="largest accepted request in MiB")
    add("--request_timeout_s", type=positive, default=DEFAULT_REQUEST_TIMEOUT_S,
        help="a get_action not answered this long after it arrived gets an error reply (seconds)")
    add_load_arguments(parser, SERVE_MAX_BATCH)
    add("--allow_legacy_format", action="store_true", help="also accept the old pickle-based torch.save format")
    add("--server", action="store_true", help="accepted for compatibility with inference_service.py; no effect")
    add("--camera_map", type=camera_map, default=None, help="--protocol lerobot: the robot's camera -> the "
        "checkpoint's video key, e.g. \"{front: webcam}\" (default: the cameras in name order)")
    add("--fps", type=positive, default=30.0, help="--protocol lerobot: the robot's control rate; a chunk's action i "
        "is stamped i/fps after its observation (LeRobot's policy_server --fps; default 30)")
    return parser


def add_load_arguments(parser: ArgumentParser, max_batch: int | None) -> None:
    """The load flags `serve` and `fleet serve` share: `--max_batch` (when `max_batch` gives its default),
    `--max_queue`, `--grace_s`."""
    add = parser.add_argument

    if max_batch is not None:
        add("--max_batch", type=int, default=max_batch, help=f"most observations one request may hold; its frames "
            f"count within max_batch x cameras x 4096x4096 pixels, each at least its training resolution "
            f"(default: {max_batch})")
    add("--max_queue", type=int, default=DEFAULT_MAX_QUEUE, help="get_action requests that may wait; beyond it, or "
        f"when a request could not be answered within --request_timeout_s, it is refused (default: {DEFAULT_MAX_QUEUE})")
    add("--grace_s", type=non_negative, default=DEFAULT_GRACE_S, help="on SIGTERM/SIGINT, how long requests already "
        f"received get to be answered before they get an error reply (default: {DEFAULT_GRACE_S:g})")


def check_load_arguments(args: argparse.Namespace) -> None:
    """ValueError (one line) for load flags out of range (the ports, sizes and times are checked by their types)."""
    if args.max_batch < 1 or args.max_queue < 1:
        raise ValueError(f"--max_batch and --max_queue must be >= 1, got {args.max_batch} and {args.max_queue}")


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `PolicyServer` options both commands take from their flags."""
    return dict(host=args.host, port=args.port, api_token=args.api_token,
                max_message_bytes=int(args.max_message_mb * 2**20), request_timeout_s=args.request_timeout_s,
                max_queue=args.max_queue, grace_s=args.grace_s)


def setup_failed(program: str, e: BaseException, server: PolicyServer | None) -> int:
    """The exit code after a failure before serving (bad checkpoint or config, unavailable backend or package,
    address taken: one line, 2), or a Ctrl-C while the model loads (130). The model loads on a daemon thread:
    nothing waits for it, and a load still running there leaves now, before interpreter shutdown aborts under it."""
    if server is not None:
        server.close()
    if raised_by_interrupt(e):
        print(f"{program}: interrupted while loading the model", file=sys.stderr, flush=True)
        from gr00t_fast.runtime.torch_thread import exit_if_busy

        exit_if_busy(130)
        return 130
    print(f"{program}: error: {protocol.bounded(str(e))}", file=sys.stderr)
    return 2


def serve_until_stopped(server: PolicyServer, then: Callable[[], None] = lambda: None) -> int:
    """Serve until SIGTERM/SIGINT has stopped `server` gracefully, run `then` (the fleet stops Triton), and leave
    without waiting for an inference still running past the grace period."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    try:
        server.run()
    finally:
        then()
    from gr00t_fast.runtime.torch_thread import exit_if_busy

    exit_if_busy(0)
    return 0


def serve_main(argv: list[str] | None = None) -> int:
    """`gr00t-fast serve`."""
    parser = serve_parser()
    args = parser.parse_args(argv)
    if args.protocol == "zmq" and not args.model_path:
        parser.error("the following arguments are required: --model_path (--protocol lerobot takes the checkpoint "
                     "its robot client names)")
    for protocol, names in PROTOCOL_FLAGS.items():
        given = [f"--{name}" for name in names if getattr(args, name) != parser.get_default(name)]
        if protocol != args.protocol and given:
            parser.error(f"{', '.join(given)}: read by --protocol {protocol} only, not by --protocol {args.protocol}")
    args.port = PROTOCOLS[args.protocol] if args.port is None else args.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.protocol == "lerobot":
        return serve_lerobot(args)
    from gr00t_fast.loading import create_policy

    server = None
    try:
        check_load_arguments(args)
        args.model_path = str(resolve_checkpoint(args.model_path, args.revision))  # a model id: its snapshot folder
        config = policy_config_from_args(args)
        check_policy_inputs(args.model_path, args.embodiment_tag, args.data_config)  # before it binds or loads
        # bound before the model loads: an address it cannot use is reported at once
        server = PolicyServer(None, allow_legacy_format=args.allow_legacy_format, **server_options(args))
        server.housekeeping.append(CheckpointWatch(args.model_path).poll)  # the folder as the weights are read
        server.policy = create_policy(config, warmup=True, announce=True, max_batch=args.max_batch,
                                      warmup_batch=args.max_batch > 1)
    except (KeyboardInterrupt, ImportError, OSError, ValueError, RuntimeError) as e:
        return setup_failed("gr00t-fast serve", e, server)
    return serve_until_stopped(server)


def serve_lerobot(args: argparse.Namespace) -> int:
    """`gr00t-fast serve --protocol lerobot`: bound first, then the checkpoint of --model_path loaded, if any."""
    from gr00t_fast.serve.lerobot_grpc import LeRobotServer

    server = None
    try:
        server = LeRobotServer(policy_config_from_args(args), host=args.host, port=args.port,
                               api_token=args.api_token, max_message_bytes=int(args.max_message_mb * 2**20),
                               camera_map=args.camera_map, fps=args.fps, grace_s=args.grace_s)
        if args.model_path:
            args.model_path = str(resolve_checkpoint(args.model_path, args.revision))
            check_policy_inputs(args.model_path, args.embodiment_tag, args.data_config)  # before the model loads
            server.serve_only(args.model_path)
    except (KeyboardInterrupt, ImportError, OSError, ValueError, RuntimeError) as e:
        return setup_failed("gr00t-fast serve", e, server)
    return serve_until_stopped(server)


def fleet_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="gr00t-fast fleet serve",
        description="Serve one GR00T N1.5 policy to many robots: a Triton Inference Server model with dynamic "
        "batching (gRPC/HTTP), and the Isaac-GR00T ZeroMQ protocol in front for existing robot clients. Every flag "
        "also takes dashes (--model-path).")
    add_policy_arguments(parser)
    parser.add_argument("--max_batch", type=int, default=16, help="largest batch Triton forms")
    parser.add_argument("--max_queue_delay_ms", type=non_negative, default=5.0,
                        help="longest a request waits for others to batch with")
    parser.add_argument("--host", default="127.0.0.1", help="interface of the ZeroMQ front")
    parser.add_argument("--port", type=port, default=5555, help="ZeroMQ front port")
    parser.add_argument("--api_token", type=token, default=None, help="require this token in every ZeroMQ request, and in the "
                        "triton-access-token header (gRPC: triton-grpc-protocol-triton-access-token) of Triton's")
    parser.add_argument("--triton_host", default="127.0.0.1", help="interface of Triton's gRPC/HTTP endpoints")
    parser.add_argument("--grpc_port", type=port, default=8001, help="Triton gRPC port")
    parser.add_argument("--http_port", type=port, default=8000, help="Triton HTTP port")
    parser.add_argument("--metrics_port", type=port, default=8002, help="Triton metrics port")
    parser.add_argument("--max_message_mb", type=positive, default=DEFAULT_MAX_MESSAGE_MB,
                        help="largest accepted ZeroMQ request in MiB")
    parser.add_argument("--request_timeout_s", type=positive, default=DEFAULT_REQUEST_TIMEOUT_S,
                        help="a get_action not answered this long after it arrived gets an error reply (seconds)")
    add_load_arguments(parser, max_batch=None)  # --max_batch above: Triton's batch is also a request's bound
    return parser


def fleet_main(argv: list[str] | None = None) -> int:
    """`gr00t-fast fleet serve`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        fleet_parser().print_help()
        return 0
    if not argv or argv[0] != "serve":
        print("gr00t-fast fleet: error: usage: gr00t-fast fleet serve --model_path PATH [options] (--help for them)",
              file=sys.stderr)
        return 2
    args = fleet_parser().parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_load_arguments(args)
        if args.max_queue_delay_ms < 0:
            raise ValueError("--max_queue_delay_ms must be >= 0")
        import pytriton  # noqa: F401 - the one-line answer when the extra is missing
    except ImportError:
        print('gr00t-fast fleet: error: PyTriton is not installed (pip install "gr00t-fast[fleet]")', file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"gr00t-fast fleet: error: {e}", file=sys.stderr)
        return 2
    from gr00t_fast.loading import create_policy
    from gr00t_fast.serve.fleet_front import FleetFront
    from gr00t_fast.serve.fleet_model import MODEL_NAME, FleetModel
    from gr00t_fast.serve.triton import check_ports_free, start_triton

    front = None
    try:  # the ZeroMQ front bound, Triton's ports checked, before the model loads
        front = FleetFront(None, f"grpc://127.0.0.1:{args.grpc_port}", concurrency=2 * args.max_batch,
                           **server_options(args))
        check_ports_free(args.triton_host, [args.grpc_port, args.http_port, args.metrics_port])
        args.model_path = str(resolve_checkpoint(args.model_path, args.revision))  # a model id: its snapshot folder
        check_policy_inputs(args.model_path, args.embodiment_tag, args.data_config)  # before the model loads
        front.housekeeping.append(CheckpointWatch(args.model_path).poll)
        front.policy = policy = create_policy(policy_config_from_args(args), warmup=True, announce=True,
                                              max_batch=args.max_batch, warmup_batch=args.max_batch > 1)
        triton = start_triton(FleetModel(policy), max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms,
                              host=args.triton_host, grpc_port=args.grpc_port, http_port=args.http_port,
                              metrics_port=args.metrics_port, api_token=args.api_token)
    except (KeyboardInterrupt, OSError, ValueError, RuntimeError) as e:
        return setup_failed("gr00t-fast fleet", e, front)
    if args.api_token is None and not is_loopback(args.triton_host):
        log.warning("Triton on %s without --api_token: anyone on the network can drive the robots", args.triton_host)
    log.info("Triton model %r: gRPC %s:%d, HTTP %s:%d; ZeroMQ front %s", MODEL_NAME, args.triton_host, args.grpc_port,
             args.triton_host, args.http_port, front.address)
    return serve_until_stopped(front, then=triton.stop)
