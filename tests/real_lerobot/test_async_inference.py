"""`gr00t-fast serve --protocol lerobot` against LeRobot's own async inference client side (0.4.4 on Python 3.11,
0.6.1 on 3.12): its `RobotClient` driving the SO follower over the simulated bus, and its own pickles and generated
gRPC stubs for the exact answers, the refusals (hostile pickles, other clients, other checkpoints) and the server
staying up after each."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from stand_ins import StandInCamera, write_calibration
from test_follower import lerobot_unnormalize

from gr00t_fast.loading import load_policy
from gr00t_fast.policy.config import PolicyConfig
from gr00t_fast.robot.base import ACTION_KEYS
from gr00t_fast.robot.follower import SO100_JOINT_LIMITS_DEG
from gr00t_fast.serve import lerobot_grpc
from gr00t_fast.serve.lerobot_grpc import LeRobotServer

pytest.importorskip("lerobot", reason="LeRobot is not installed here (bash .ci/lerobot_env.sh builds the environment)")
grpc = pytest.importorskip("grpc", reason="grpcio: LeRobot's async extra (gr00t-fast install-lerobot installs it)")
from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation  # noqa: E402
from lerobot.transport import services_pb2, services_pb2_grpc  # noqa: E402
from lerobot.transport.utils import send_bytes_in_chunks  # noqa: E402

FEATURES = {"observation.state": {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)},
            "observation.images.front": {"dtype": "image", "shape": (480, 640, 3),
                                         "names": ["height", "width", "channels"]}}  # an SO follower with a camera
FRAME = np.ascontiguousarray(StandInCamera.connected[0][:, :, ::-1])  # OpenCVCamera delivers RGB


@pytest.fixture
def server(monkeypatch):
    """gr00t-fast's LeRobot server on a free loopback port, in a thread (GetActions waits 0.3 s for observations)."""
    monkeypatch.setattr(lerobot_grpc, "OBSERVATION_WAIT_S", 0.3)
    with LeRobotServer(PolicyConfig(device="cpu"), port=0).in_thread() as running:
        yield running


@contextlib.contextmanager
def client(port: int):
    """LeRobot's generated stub on a channel of its own: its own connection, so its own gRPC peer (channels of one
    process share their connections otherwise, as two robot clients' processes never do)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        yield services_pb2_grpc.AsyncInferenceStub(channel)


def instructions(checkpoint, actions_per_chunk: int = 16, policy_type: str = "groot") -> services_pb2.PolicySetup:
    config = RemotePolicyConfig(policy_type, str(checkpoint), FEATURES, actions_per_chunk, "cpu")
    return services_pb2.PolicySetup(data=pickle.dumps(config))


def observation(timestep: int, must_go: bool, state=(1.0, -2.0, 3.0, -4.0, 5.0, 40.0), stamp: float = 1000.0):
    values = dict(zip(ACTION_KEYS, state)) | {"front": FRAME, "task": "pick it up"}
    data = pickle.dumps(TimedObservation(timestamp=stamp, timestep=timestep, observation=values, must_go=must_go))
    return send_bytes_in_chunks(data, services_pb2.Observation)


def start(stub, checkpoint, actions_per_chunk: int = 16) -> None:
    stub.Ready(services_pb2.Empty())
    stub.SendPolicyInstructions(instructions(checkpoint, actions_per_chunk))


def actions(stub) -> list:
    answer = stub.GetActions(services_pb2.Empty())
    return pickle.loads(answer.data) if answer.data else []  # as LeRobot's client reads them


def served(stub, checkpoint) -> bool:
    """A whole exchange as the robot client makes it: the server is up and answers."""
    start(stub, checkpoint)
    stub.SendObservations(observation(0, must_go=True))
    return len(actions(stub)) == 16


def refusal(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call(*args)
    assert "\n" not in refused.value.details(), refused.value.details()
    return refused.value


def test_actions_are_load_policys_on_the_same_observation_with_the_clients_steps(server, trained_stand_in):
    with client(server.port) as stub:
        start(stub, trained_stand_in, actions_per_chunk=10)
        stub.SendObservations(observation(7, must_go=True, stamp=1234.5))
        sent = actions(stub)
    policy = load_policy(trained_stand_in, device="cpu")  # a fresh policy: the server's first call's seeded noise
    expected = policy.get_action({"state.single_arm": np.array([[1.0, -2.0, 3.0, -4.0, 5.0]]),
                                  "state.gripper": np.array([[40.0]]), "video.webcam": FRAME[None],
                                  policy.data_config.language_key: ["pick it up"]})
    joints = np.concatenate([expected["action.single_arm"], expected["action.gripper"]], axis=-1)
    low, high = np.array([SO100_JOINT_LIMITS_DEG[key] for key in ACTION_KEYS]).T
    assert ((joints < low) | (joints > high)).any()  # the tiny stand-in commands beyond the arm's travel: clipped
    assert [type(a).__module__ + "." + type(a).__name__ for a in sent] == \
        ["lerobot.async_inference.helpers.TimedAction"] * 10  # LeRobot's own class, built by LeRobot's unpickling
    assert [a.get_timestep() for a in sent] == list(range(7, 17))
    np.testing.assert_allclose([a.get_timestamp() for a in sent], 1234.5 + np.arange(10) / 30)
    np.testing.assert_allclose(np.stack([a.get_action().numpy() for a in sent]), np.clip(joints, low, high)[:10],
                               atol=1e-5)


def test_an_observation_in_several_chunks(server, trained_stand_in):
    """A 1080p frame: LeRobot's client sends it in 2 MiB chunks (begin, middle, end)."""
    values = dict(zip(ACTION_KEYS, [0.0] * 6)) | {"front": np.full((1080, 1920, 3), 7, np.uint8), "task": "go"}
    chunks = list(send_bytes_in_chunks(pickle.dumps(TimedObservation(5.0, 2, values, must_go=True)),
                                       services_pb2.Observation))
    assert [c.transfer_state for c in chunks] == [services_pb2.TRANSFER_BEGIN, services_pb2.TRANSFER_MIDDLE,
                                                  services_pb2.TRANSFER_END]
    with client(server.port) as stub:
        start(stub, trained_stand_in)
        stub.SendObservations(iter(chunks))
        assert [a.get_timestep() for a in actions(stub)][:2] == [2, 3]


def test_observations_are_queued_as_lerobots_server_queues_them(server, trained_stand_in):
    """must_go always; otherwise a step not predicted yet whose joints moved by 1 or more; GetActions answers empty
    (as LeRobot's) when nothing is queued."""
    with client(server.port) as stub:
        start(stub, trained_stand_in)
        assert actions(stub) == []  # nothing sent yet
        stub.SendObservations(observation(0, must_go=True))
        assert [a.get_timestep() for a in actions(stub)][:2] == [0, 1]
        stub.SendObservations(observation(0, must_go=False, state=(9, 9, 9, 9, 9, 40)))  # step 0 was predicted
        stub.SendObservations(observation(3, must_go=False, state=(1.5, -2, 3, -4, 5, 40)))  # moved by 0.5
        assert actions(stub) == []
        stub.SendObservations(observation(4, must_go=False, state=(2.0, -2, 3, -4, 5, 40)))  # moved by 1
        stub.SendObservations(observation(5, must_go=False, state=(3.0, -2, 3, -4, 5, 40)))  # newer: replaces it
        assert [a.get_timestep() for a in actions(stub)][:1] == [5]
        stub.SendObservations(observation(5, must_go=True, state=(3.0, -2, 3, -4, 5, 40)))  # must_go goes anyway
        assert [a.get_timestep() for a in actions(stub)][:1] == [5]


class Reaching:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


class Unknown:
    pass


def test_hostile_pickles_are_refused_with_nothing_run_and_the_server_keeps_serving(server, trained_stand_in,
                                                                                 tmp_path, caplog):
    import torch

    marker = tmp_path / "ran"
    hostile = {
        "os.system": pickle.dumps(Reaching(os.system, f"touch {marker}")),
        "builtins.eval": pickle.dumps(Reaching(eval, f"open({str(marker)!r}, 'w')")),
        "subprocess.Popen": pickle.dumps(Reaching(subprocess.Popen, ["touch", str(marker)])),
        "inside an observation": pickle.dumps(TimedObservation(1.0, 0, {"front": Reaching(os.system,
                                                                                          f"touch {marker}")})),
        "an unknown class": pickle.dumps(Unknown()),
        "a torch tensor": pickle.dumps(torch.zeros(3)),
        "random bytes": np.random.default_rng(0).bytes(5000),
    }
    with client(server.port) as stub:  # one client all along: each refusal leaves its session as it was
        for name, data in hostile.items():
            for send in ("instructions", "observation"):
                stub.Ready(services_pb2.Empty())
                if send == "instructions":
                    refused = refusal(stub.SendPolicyInstructions, services_pb2.PolicySetup(data=data))
                else:
                    stub.SendPolicyInstructions(instructions(trained_stand_in))
                    caplog.clear()
                    with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):
                        refused = refusal(stub.SendObservations, send_bytes_in_chunks(data, services_pb2.Observation))
                    logged = [r.getMessage() for r in caplog.records if r.name == "gr00t_fast.serve"]
                    assert len(logged) == 1 and "refused: UnsafePickle" in logged[0], logged
                assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, refused.details())
                assert refused.details().startswith("UnsafePickle: "), (name, refused.details())
                assert not marker.exists(), name
                assert served(stub, trained_stand_in), name


def test_oversized_streams_bad_values_and_a_stream_cut_short_are_refused_in_one_line(trained_stand_in, caplog):
    with LeRobotServer(PolicyConfig(device="cpu"), port=0, max_message_bytes=2**20).in_thread() as small:
        with client(small.port) as stub:
            start(stub, trained_stand_in)
            big = pickle.dumps(TimedObservation(1.0, 0, {"front": np.zeros((1200, 1600, 3), np.uint8)}))
            refused = refusal(stub.SendObservations, send_bytes_in_chunks(big, services_pb2.Observation))
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "exceeds the limit of 1.0 MB (--max_message_mb)" in refused.details()
            values = dict(zip(ACTION_KEYS, (1.0, -2.0, 3.0, -4.0, 5.0, 40.0))) | {"task": "pick it up"}
            for wrong, why in [({**values, "front": FRAME[:, :, 0]}, "camera 'front' must be an (H, W, 3) uint8 frame"),
                               ({**values, "front": FRAME, "gripper.pos": "open"}, "joint 'gripper.pos' must be a "
                                                                                   "finite number"),
                               (values, "the observation misses ['front']"),
                               ({**values, "front": FRAME, "task": 3}, "'task' must be a string of at most 2000 characters, got int")]:
                data = pickle.dumps(TimedObservation(1.0, 0, wrong, must_go=True))
                refused = refusal(stub.SendObservations, send_bytes_in_chunks(data, services_pb2.Observation))
                assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and why in refused.details(), \
                    refused.details()
            cut = [services_pb2.Observation(transfer_state=services_pb2.TRANSFER_BEGIN, data=b"\x80\x04")]
            refused = refusal(stub.SendObservations, iter(cut))
            assert "ended before its last chunk" in refused.details()
            assert served(stub, trained_stand_in)


def test_a_policys_non_finite_actions_are_refused_never_sent(server, trained_stand_in, caplog):
    """Clipping to the arm's travel lets NaN through: a chunk with any is refused, and the server keeps serving."""
    with client(server.port) as stub:
        start(stub, trained_stand_in)
        get_action = server.policy.get_action

        def nan_action(observation):
            output = get_action(observation)
            return {key: np.where(np.arange(value.shape[-1]) == 0, np.nan, value) for key, value in output.items()}

        server.policy.get_action = nan_action
        stub.SendObservations(observation(3, must_go=True))
        with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):
            refused = refusal(stub.GetActions, services_pb2.Empty())
        assert refused.code() == grpc.StatusCode.INTERNAL
        assert refused.details() == "the policy's actions for observation #3 are not finite (NaN or inf): none are sent"
        logged = [r.getMessage() for r in caplog.records if r.name == "gr00t_fast.serve"]
        assert len(logged) == 1 and "GetActions from" in logged[0] and "not finite" in logged[0], logged
        del server.policy.get_action
        assert served(stub, trained_stand_in)


def test_a_stalled_observation_stream_is_cut_and_its_thread_freed(trained_stand_in, monkeypatch):
    """A client that opens a stream and goes silent holds a server thread until the stream's deadline (here 0.5 s,
    one thread): then the stream is cancelled and the next call is served."""
    monkeypatch.setattr(lerobot_grpc, "WORKERS", 1)
    monkeypatch.setattr(lerobot_grpc, "STREAM_DEADLINE_S", 0.5)
    release = threading.Event()

    def stalled():
        yield services_pb2.Observation(transfer_state=services_pb2.TRANSFER_BEGIN, data=b"\x80\x04")
        release.wait(60)

    said = threading.Event()  # the server's thread says the cut once it leaves the stream, after the client sees it

    class Cut(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if re.search(r"observation stream from .* cut: not complete within 0.5 s", record.getMessage()):
                said.set()

    logger = logging.getLogger("gr00t_fast.serve")
    logger.addHandler(handler := Cut(logging.WARNING))
    with LeRobotServer(PolicyConfig(device="cpu"), port=0).in_thread() as one_thread, client(one_thread.port) as stub:
        try:
            start(stub, trained_stand_in)
            stream = stub.SendObservations.future(stalled())
            assert stream.exception(timeout=20).code() == grpc.StatusCode.CANCELLED  # 20 s: a safety net only
            assert said.wait(timeout=20)
            assert served(stub, trained_stand_in)  # the one thread serves again
        finally:
            release.set()
            logger.removeHandler(handler)


HELPERS = b"lerobot.async_inference.helpers"
NOT_A_DICT = (b"\x80\x04\x8c" + bytes([len(HELPERS)]) + HELPERS + b"\x8c\x12RemotePolicyConfig\x93"  # the class
              b")\x81K\x01b.")  # built (NEWOBJ) with the state 1 (BUILD)


def test_malformed_instructions_and_observations_are_refused_in_one_line(server, trained_stand_in):
    def setup(**fields):
        config = RemotePolicyConfig("groot", str(trained_stand_in), FEATURES, 16, "cpu")
        config.__dict__.update(fields)
        return services_pb2.PolicySetup(data=pickle.dumps(config))

    def timed(**fields):
        timed = TimedObservation(1.0, 0, dict(zip(ACTION_KEYS, [0.0] * 6)) | {"front": FRAME}, must_go=True)
        timed.__dict__.update(fields)
        return send_bytes_in_chunks(pickle.dumps(timed), services_pb2.Observation)

    with client(server.port) as stub:
        stub.Ready(services_pb2.Empty())
        for wrong, why in [(setup(rename_map={"a": "b"}), "rename_map is not taken here"),
                           (setup(actions_per_chunk=0), "actions_per_chunk must be >= 1, got 0"),
                           (setup(actions_per_chunk=True), "actions_per_chunk must be int, got bool"),
                           (setup(device=None), "RemotePolicyConfig.device must be str, got NoneType"),
                           (setup(lerobot_features={"observation.images.front": {}}), "needs 'observation.state'"),
                           (setup(lerobot_features=[]), "lerobot_features must be a dict"),
                           (services_pb2.PolicySetup(data=pickle.dumps(["groot"])), "must be LeRobot's "
                                                                                     "RemotePolicyConfig, got list"),
                           (services_pb2.PolicySetup(data=NOT_A_DICT), "fields must come as a dict, got int")]:
            refused = refusal(stub.SendPolicyInstructions, wrong)
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and why in refused.details(), refused.details()
        refused = refusal(stub.SendObservations, observation(0, must_go=True))
        assert refused.details() == "observation before policy instructions (SendPolicyInstructions)"
        stub.SendPolicyInstructions(setup())
        for wrong, why in [(timed(timestamp="now"), "timestamp must be"), (timed(timestamp=float("nan")), "finite"),
                           (timed(timestep=1.5), "timestep must be"), (timed(must_go=1), "must_go must be bool"),
                           (timed(observation=[1.0]), "observation must be dict"),
                           (timed(observation={1: 2.0}), "keyed by names"),
                           (send_bytes_in_chunks(pickle.dumps([1.0]), services_pb2.Observation),
                            "observations must be LeRobot's TimedObservation, got list")]:
            refused = refusal(stub.SendObservations, wrong)
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and why in refused.details(), refused.details()
        assert served(stub, trained_stand_in)


def test_the_clients_checkpoint_and_policy_type_or_the_one_model_path_fixes(trained_stand_in, tiny_checkpoint,
                                                                             tmp_path):
    with LeRobotServer(PolicyConfig(device="cpu"), port=0).in_thread() as chosen:
        with client(chosen.port) as stub:
            stub.Ready(services_pb2.Empty())
            refused = refusal(stub.SendPolicyInstructions, instructions(trained_stand_in, policy_type="act"))
            assert refused.details() == "policy_type 'act' is not served here: gr00t-fast serves groot, gr00t_fast " \
                                        "(GR00T N1.5)"
            refused = refusal(stub.SendPolicyInstructions, instructions("nobody/no-such-gr00t"))
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "pretrained_name_or_path nobody/no-such-gr00t (revision main) is not in the Hugging Face cache" \
                in refused.details() and "models are read from the cache alone" in refused.details()  # no download
            refused = refusal(stub.SendPolicyInstructions, instructions(tmp_path / "missing"))
            assert str(tmp_path / "missing") in refused.details()
            assert served(stub, trained_stand_in)
            start(stub, tiny_checkpoint)  # another checkpoint named: loaded in place of the first
            assert chosen.policy_path == tiny_checkpoint.resolve()
    fixed = LeRobotServer(PolicyConfig(device="cpu"), port=0)
    fixed.serve_only(trained_stand_in)
    with fixed.in_thread(), client(fixed.port) as stub:
        stub.Ready(services_pb2.Empty())
        refused = refusal(stub.SendPolicyInstructions, instructions(tiny_checkpoint))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.details().startswith(f"this server serves {trained_stand_in.resolve()} (--model_path); the "
                                            f"client asked for {tiny_checkpoint}")
        assert served(stub, trained_stand_in)


def until(condition, what: str) -> None:
    """Wait for `condition()` (a safety net of 30 s: the test fails there, it asserts no duration)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_one_client_at_a_time_a_slow_one_and_one_that_leaves_mid_call(server, trained_stand_in, caplog,
                                                                     monkeypatch):
    consumed = threading.Event()  # set once the server has taken a stream's chunk and waits for the next
    receive = server.receive

    def watched(chunks, session):
        def chunks_then_signal():
            for chunk in chunks:
                yield chunk
                consumed.set()
        return receive(chunks_then_signal(), session)

    monkeypatch.setattr(server, "receive", watched)
    with client(server.port) as first, client(server.port) as second:
        start(first, trained_stand_in)
        for call, message in ((second.Ready, services_pb2.Empty()),
                              (second.SendPolicyInstructions, instructions(trained_stand_in))):
            refused = refusal(call, message)
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.details().startswith(f"this server drives one robot at a time and serves "
                                                f"{server.session.peer}; ")
        waiting = first.GetActions.future(services_pb2.Empty())
        until(lambda: server.session.calls == 1, "GetActions in flight")
        server.session.seen -= lerobot_grpc.SESSION_IDLE_S  # a long call (a slow inference, a load) ...
        assert refusal(second.Ready, services_pb2.Empty()).code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # ... holds
        assert not waiting.result().data

        def stalled():  # a slow client: one chunk of its observation, then nothing
            yield services_pb2.Observation(transfer_state=services_pb2.TRANSFER_BEGIN, data=b"\x80\x04")
            time.sleep(60)

        stream = first.SendObservations.future(stalled())
        until(consumed.is_set, "the server took the stream's first chunk")
        server.session.seen -= lerobot_grpc.SESSION_IDLE_S  # then nothing from it for that long (a fake clock)
        assert served(second, trained_stand_in)  # its stalled stream holds no session
        assert refusal(first.Ready, services_pb2.Empty()).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stream.cancel()

        with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):
            waiting = second.GetActions.future(services_pb2.Empty())
            until(lambda: server.session.calls == 1, "GetActions in flight")
            waiting.cancel()  # the client leaves in the middle of a call: its session ends at once
            until(lambda: server.session is None, "the session of the client that left ended")
        assert [r for r in caplog.records if "left while waiting for actions: its session ends" in r.getMessage()]
        assert served(first, trained_stand_in)


def test_an_api_token_is_asked_of_every_call(trained_stand_in, caplog):
    with LeRobotServer(PolicyConfig(device="cpu"), port=0, api_token="s3cret").in_thread() as guarded:
        with client(guarded.port) as stub:
            refused = refusal(stub.Ready, services_pb2.Empty())
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            token = (("authorization", "Bearer s3cret"),)
            stub.Ready(services_pb2.Empty(), metadata=token)
            stub.SendPolicyInstructions(instructions(trained_stand_in), metadata=token)
            refused = refusal(lambda: stub.SendObservations(observation(0, must_go=True),
                                                            metadata=(("authorization", "Bearer wrong"),)))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):  # every interface: said once without a token
        for host, token in (("0.0.0.0", "s3cret"), ("0.0.0.0", None), ("127.0.0.1", None)):
            LeRobotServer(PolicyConfig(device="cpu"), host=host, port=0, api_token=token).close()
    assert [r.getMessage() for r in caplog.records] == ["serving LeRobot clients on 0.0.0.0 without --api_token: "
                                                        "anyone who reaches it can drive the robot"]


def test_the_camera_map_is_the_servers(trained_stand_in):
    with LeRobotServer(PolicyConfig(device="cpu"), port=0, camera_map={"wrist": "webcam"}).in_thread() as mapped:
        with client(mapped.port) as stub:
            stub.Ready(services_pb2.Empty())
            refused = refusal(stub.SendPolicyInstructions, instructions(trained_stand_in))
            assert refused.details() == "ValueError: camera_map names camera 'wrist'; the robot has ['front']"


def test_a_port_in_use_is_one_line_before_any_model_loads(server):
    with pytest.raises(OSError) as refused:  # gRPC would share the port (SO_REUSEPORT) unless told not to
        LeRobotServer(PolicyConfig(device="cpu"), port=server.port)
    assert str(refused.value).startswith(f"cannot bind the LeRobot policy server to 127.0.0.1:{server.port}")
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_lerobots_robot_client_drives_the_follower_from_gr00t_fast(monkeypatch, bus, camera, trained_stand_in,
                                                                    tmp_path, caplog):
    """LeRobot's own RobotClient (as `python -m lerobot.async_inference.robot_client` builds it from its flags) with
    the SO follower on the simulated bus, for 3 s at 10 fps, the checkpoint named by the client."""
    monkeypatch.chdir(tmp_path)  # the client's module writes logs/ into the working directory when imported
    import draccus
    import lerobot.robots.so_follower  # noqa: F401 - registers so100_follower, as the client's command does
    from lerobot.async_inference.configs import RobotClientConfig
    from lerobot.async_inference.robot_client import RobotClient

    sent = []
    real = lerobot_grpc.timed_actions
    monkeypatch.setattr(lerobot_grpc, "timed_actions", lambda chunk, *rest: sent.append(chunk) or real(chunk, *rest))
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    with caplog.at_level(logging.INFO), LeRobotServer(PolicyConfig(device="cpu"), port=0).in_thread() as running:
        config = draccus.parse(RobotClientConfig, args=[
            "--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
            f"--robot.calibration_dir={calibration_dir}",
            "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, warmup_s: 0}}",
            "--task=pick it up", f"--server_address=127.0.0.1:{running.port}", "--policy_type=groot",
            f"--pretrained_name_or_path={trained_stand_in}", "--policy_device=cpu", "--actions_per_chunk=16",
            "--fps=10"])
        robot_client = RobotClient(config)
        assert robot_client.start()
        receiver = threading.Thread(target=robot_client.receive_actions, daemon=True)
        receiver.start()
        threading.Timer(3.0, robot_client.shutdown_event.set).start()
        try:
            robot_client.control_loop(task=config.task)  # until the timer sets its shutdown event
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]  # the client's too
        finally:
            robot_client.stop()  # as the client's own entry point leaves: its GetActions cut short
            receiver.join(10)
        until(lambda: running.session is None or not running.session.calls, "the client's last call ended")
        if running.session is not None:  # it left between two GetActions: its session expires instead
            running.session.seen -= lerobot_grpc.SESSION_IDLE_S
        with client(running.port) as stub:  # the server is still up and takes the next client
            assert served(stub, trained_stand_in)
    assert not errors, errors
    goals = [g for g in bus.goal_writes if len(g) == 6]
    assert len(goals) >= 4 and len(sent) >= 2  # the arm moved, chunk after chunk
    first = lerobot_unnormalize(bus, calibration_dir, dict(zip(ACTION_KEYS, sent[0][0])))
    assert all(abs(goals[0][motor] - first[motor]) <= 1 for motor in first), (goals[0], first)


@pytest.mark.slow
def test_the_command_serves_and_stops_on_ctrl_c(trained_stand_in):
    """`gr00t-fast serve --protocol lerobot --model_path ...`: loads at start, serves, exits 0 on SIGINT."""
    from processes import default_stop_signals

    process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", "serve", "--protocol", "lerobot", "--port", "0",
                                "--model_path", str(trained_stand_in), "--device", "cpu", "--fps", "10"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=default_stop_signals)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "LeRobot async inference server listening on " in line:
                break
        port = int(lines[-1].split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        with client(port) as stub:
            start(stub, trained_stand_in)
            stub.SendObservations(observation(3, must_go=True, stamp=50.0))
            assert [a.get_timestamp() for a in actions(stub)][:3] == pytest.approx([50.0, 50.1, 50.2])  # --fps 10
        process.send_signal(signal.SIGINT)
        out = "".join(lines) + process.communicate(timeout=60)[0]
    finally:
        process.kill()
    assert process.returncode == 0, out
    assert "LeRobot async inference server stopped" in out and "Traceback" not in out
