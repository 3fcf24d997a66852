"""LeRobot's async inference served two ways on one tiny GR00T N1.5 checkpoint in LeRobot's format: LeRobot 0.4.4's
own `policy_server` with its `groot` policy, and `gr00t-fast serve --protocol lerobot` (`LeRobotServer`).

Per server: the observation-to-actions time of `--observations` observations from LeRobot's own messages and
generated stub on loopback (SendObservations with must_go, then GetActions: the server's decode, mapping, inference
and encoding, and the transport), and the action rate of LeRobot's own RobotClient driving the SO follower on the
simulated bus (tests/real_lerobot's stand-ins) for `--seconds` at `--fps`. LeRobot's server sleeps in each GetActions
until its `--inference_latency` (default 1/30 s) has passed: 0 here, so both answer as fast as they can. LeRobot 0.6
has no N1.5 (its groot is N1.7): this runs in the LeRobot 0.4 environment,

    $(bash .ci/lerobot_env.sh | tail -n 1) benchmarks/lerobot_async.py [--observations 30] [--seconds 5] [--fps 30]

and writes benchmarks/results/cpu/lerobot_async.json. The checkpoint's weights are random and tiny: the figures
compare the two servers' own costs around a small network, not GR00T's 3B inference.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE / "tests" / "real_lerobot"), str(HERE / "tests")]
WORK = Path(tempfile.mkdtemp(prefix="lerobot_async_"))
os.environ.update(HF_LEROBOT_HOME=str(WORK / "lerobot_home"), HF_HUB_OFFLINE="1")  # before LeRobot reads them
import torchvision_shim  # noqa: E402,F401 - LeRobot's torchvision import beside CPU torch (see there)
from feetech_bus import SimulatedFeetechBus, patient  # noqa: E402
from lerobot_n15_format import write_lerobot_n15  # noqa: E402
from stand_ins import CALIBRATION, MOTOR_IDS, REST, StandInCamera, write_calibration  # noqa: E402
from test_checkpoints import STATS, eagle_on_cpu, lerobot_eagle_assets  # noqa: E402

from gr00t_fast.model.random_checkpoint import write_checkpoint  # noqa: E402
from gr00t_fast.policy.config import PolicyConfig  # noqa: E402
from gr00t_fast.robot.base import ACTION_KEYS  # noqa: E402
from gr00t_fast.serve.lerobot_grpc import LeRobotServer  # noqa: E402

FEATURES = {"observation.state": {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)},
            "observation.images.front": {"dtype": "image", "shape": (480, 640, 3),
                                         "names": ["height", "width", "channels"]}}


@contextlib.contextmanager
def lerobots_server() -> Iterator[int]:
    """LeRobot's own policy_server (its servicer and its gRPC setup) on a free loopback port."""
    import grpc
    from lerobot.async_inference.configs import PolicyServerConfig
    from lerobot.async_inference.policy_server import PolicyServer
    from lerobot.transport import services_pb2_grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=4))  # as LeRobot's serve() builds it
    services_pb2_grpc.add_AsyncInferenceServicer_to_server(PolicyServer(PolicyServerConfig(inference_latency=0)),
                                                           server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@contextlib.contextmanager
def gr00t_fasts_server() -> Iterator[int]:
    """`gr00t-fast serve --protocol lerobot`'s server on a free loopback port."""
    with LeRobotServer(PolicyConfig(device="cpu"), port=0).in_thread() as server:
        yield server.port


def observation_times(port: int, checkpoint: Path, count: int) -> dict:
    """Policy load time, then per observation the time from SendObservations to the GetActions answer (ms)."""
    import grpc
    from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import send_bytes_in_chunks

    rng = np.random.default_rng(0)
    frame = np.ascontiguousarray(StandInCamera.connected[0][:, :, ::-1])
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        stub.Ready(services_pb2.Empty())
        started = time.perf_counter()
        config = RemotePolicyConfig("groot", str(checkpoint), FEATURES, 16, "cpu")
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(config)))
        load_s = time.perf_counter() - started
        times = []
        for step in range(count + 1):  # the first one warms up
            values = dict(zip(ACTION_KEYS, rng.uniform(-30, 30, 6))) | {"front": frame, "task": "pick it up"}
            data = pickle.dumps(TimedObservation(time.time(), step * 16, values, must_go=True))
            started = time.perf_counter()
            stub.SendObservations(send_bytes_in_chunks(data, services_pb2.Observation))
            while not (answer := stub.GetActions(services_pb2.Empty())).data:
                pass
            times.append((time.perf_counter() - started) * 1e3)
            assert len(pickle.loads(answer.data)) == 16
    return {"policy_load_s": round(load_s, 2), "first_observation_ms": round(times[0], 1),
            "observation_to_actions_ms": {"median": round(statistics.median(times[1:]), 1),
                                          "p90": round(float(np.percentile(times[1:], 90)), 1),
                                          "max": round(max(times[1:]), 1), "count": count}}


def action_rate(port: int, checkpoint: Path, seconds: float, fps: int) -> dict:
    """LeRobot's RobotClient with the SO follower on the simulated bus for `seconds`: actions sent to the servos."""
    import draccus
    import lerobot.robots.so_follower  # noqa: F401 - registers so100_follower
    from lerobot.async_inference.configs import RobotClientConfig
    from lerobot.async_inference.robot_client import RobotClient

    bus = SimulatedFeetechBus({MOTOR_IDS[n]: c for n, c in CALIBRATION.items()},
                              {MOTOR_IDS[n]: p for n, p in REST.items()})
    try:
        config = draccus.parse(RobotClientConfig, args=[
            "--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
            f"--robot.calibration_dir={WORK / 'calibration'}",
            "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, warmup_s: 0}}",
            "--task=pick it up", f"--server_address=127.0.0.1:{port}", "--policy_type=groot",
            f"--pretrained_name_or_path={checkpoint}", "--policy_device=cpu", "--actions_per_chunk=16",
            f"--fps={fps}"])
        client = RobotClient(config)
        assert client.start()
        receiver = threading.Thread(target=client.receive_actions, daemon=True)
        receiver.start()
        threading.Thread(target=client.control_loop, args=(config.task,), daemon=True).start()
        deadline = time.monotonic() + 120
        while not any(len(g) == 6 for g in bus.goal_writes):  # the policy loads, the first chunk arrives
            assert time.monotonic() < deadline, "no action reached the servos in 120 s"
            time.sleep(0.01)
        before = sum(len(g) == 6 for g in bus.goal_writes)
        time.sleep(seconds)
        sent = sum(len(g) == 6 for g in bus.goal_writes) - before
        client.shutdown_event.set()
        time.sleep(0.5)
        client.stop()
    finally:
        bus.close()
    return {"actions_per_s": round(sent / seconds, 1), "target_fps": fps, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/cpu/lerobot_async.json")
    args = parser.parse_args()
    path = Path(args.out).resolve()
    os.chdir(WORK)  # LeRobot's client and server modules write logs/ into the working directory
    from lerobot.cameras.opencv import camera_opencv
    from lerobot.motors.feetech import feetech

    camera_opencv.cv2.VideoCapture = StandInCamera
    feetech.patch_setPacketTimeout = patient(feetech.patch_setPacketTimeout)  # as tests/real_lerobot/conftest.py
    write_calibration(WORK / "calibration")
    tiny = write_checkpoint(WORK / "tiny", size="tiny", seed=0, progress=False)
    lerobot_eagle_assets(tiny / "eagle2_hg_model", WORK / "lerobot_home" / "lerobot" / "eagle2hg-processor-groot-n1p5")
    checkpoint = write_lerobot_n15(WORK / "groot", tiny, {"front": (480, 640)}, STATS)
    import lerobot.policies.groot.groot_n1 as groot_n1
    from lerobot.policies.groot.utils import ensure_eagle_cache_ready

    groot_n1.ensure_eagle_cache_ready = eagle_on_cpu(ensure_eagle_cache_ready)  # LeRobot's server on a CPU
    results = {}
    for name, serving in (("lerobot_policy_server_groot", lerobots_server), ("gr00t_fast_serve_lerobot",
                                                                               gr00t_fasts_server)):
        with serving() as port:  # a server for each part: each client starts a session of its own
            results[name] = observation_times(port, checkpoint, args.observations)
        with serving() as port:
            results[name] |= action_rate(port, checkpoint, args.seconds, args.fps)
        print(name, results[name], flush=True)
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    out = {"what": "LeRobot 0.4.4's policy_server (groot) against gr00t-fast serve --protocol lerobot, one tiny "
                   "random-weight N1.5 checkpoint in LeRobot's format, LeRobot's own client messages on loopback",
           "servers": results,
           "cpu": next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("Model name")),
                       None),
           "cores_usable": len(os.sched_getaffinity(0)), "load_average": list(os.getloadavg()),
           "lscpu_flags": next((line.split(":", 1)[1].split() for line in flags.splitlines()
                                if line.startswith("Flags")), []),
           "versions": {name: importlib.metadata.version(name) for name in ("lerobot", "torch", "grpcio", "numpy")}
           | {"python": sys.version.split()[0]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
