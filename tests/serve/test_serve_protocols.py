"""`gr00t-fast serve --protocol zmq|lerobot`: the one seam between the ZeroMQ server and LeRobot's async inference
(`tests/real_lerobot/test_async_inference.py` runs the LeRobot one against LeRobot's own client)."""

from __future__ import annotations

import sys

import pytest

from gr00t_fast.serve.cli import serve_main, serve_parser


def test_zmq_stays_the_default_and_needs_its_checkpoint(capsys):
    assert serve_parser().parse_args(["--model_path", "m"]).protocol == "zmq"
    with pytest.raises(SystemExit) as exited:
        serve_main([])
    assert exited.value.code == 2
    assert "the following arguments are required: --model_path" in capsys.readouterr().err


def test_lerobot_without_lerobots_transport_is_one_line_naming_install_lerobot(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lerobot.transport", None)  # as where LeRobot (or grpcio) is not installed
    assert serve_main(["--protocol", "lerobot", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gr00t-fast serve: error: --protocol lerobot needs LeRobot's gRPC transport "
                          "(lerobot.transport and grpcio), which does not import here (") and "Error: " in err \
        and "gr00t-fast install-lerobot" in err, err


def test_lerobot_flags_are_checked_on_the_flag_line(capsys):
    args = serve_parser().parse_args(["--protocol", "lerobot", "--camera_map", "{front: webcam}", "--fps", "15"])
    assert (args.port, args.camera_map, args.fps, args.model_path) == (None, {"front": "webcam"}, 15.0, "")
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["--protocol", "lerobot", "--camera_map", "[front]"])
    assert "camera_map" in capsys.readouterr().err



@pytest.mark.parametrize("argv, words", [
    (["--protocol", "lerobot", "--max_queue", "3", "--max_batch", "2"],
     "--max_batch, --max_queue: read by --protocol zmq only, not by --protocol lerobot"),
    (["--model_path", "unused", "--fps", "10"], "--fps: read by --protocol lerobot only, not by --protocol zmq"),
])
def test_a_flag_of_the_other_protocol_is_refused_not_ignored(argv, words, capsys):
    with pytest.raises(SystemExit) as exited:
        serve_main(argv)
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and err == f"gr00t-fast serve: error: {words}", err

def nested_bomb(n: int = 200) -> list:
    """Three lists of `n` pointing at each other: a pickle of about 1.4 KB that expands to n**3 elements."""
    inner = [0] * n
    middle = [inner] * n
    return [middle] * n


def lerobot_pickle(monkeypatch, name: str, fields: dict) -> bytes:
    """`fields` pickled as LeRobot's robot_client pickles its dataclass `name` (its module stood in here)."""
    import pickle
    import types

    from gr00t_fast.serve.lerobot_wire import HELPERS

    module = types.ModuleType(HELPERS)
    record = type(name, (), {"__module__": HELPERS})
    setattr(module, name, record)
    for package in ("lerobot", "lerobot.async_inference", HELPERS):
        monkeypatch.setitem(sys.modules, package, sys.modules.get(package) or types.ModuleType(package))
    monkeypatch.setitem(sys.modules, HELPERS, module)
    value = record()
    value.__dict__.update(fields)
    return pickle.dumps(value, protocol=4)


def test_nested_list_bombs_are_refused_by_type_never_expanded_nor_printed(monkeypatch):
    """A crafted observation or robot feature of nested lists is refused by its type name: nothing converts it to
    an array (n**3 elements) or prints it."""
    import numpy as np

    from gr00t_fast.serve import lerobot_grpc
    from gr00t_fast.serve.lerobot_wire import read_observation, read_policy_setup

    bomb = nested_bomb()
    observation = read_observation(lerobot_pickle(monkeypatch, "TimedObservation", {
        "timestamp": 1.0, "timestep": 0, "must_go": True,
        "observation": {"shoulder_pan.pos": bomb, "front": bomb, "task": bomb}}), 2**20)
    asarray = np.asarray

    def no_lists(value, *args, **kwargs):
        assert not isinstance(value, list), "np.asarray of an untrusted list"
        return asarray(value, *args, **kwargs)

    monkeypatch.setattr(np, "asarray", no_lists)
    mapping = mapping_of(("shoulder_pan.pos",), {})
    with pytest.raises(ValueError) as refused:
        lerobot_grpc.robot_values(observation.values, mapping)
    assert str(refused.value) == "joint 'shoulder_pan.pos' must be a finite number, got list"
    good = {"shoulder_pan.pos": 1.0, "front": np.zeros((2, 2, 3), np.uint8), "task": "go"}
    for key, why in [("front", "camera 'front' must be an (H, W, 3) uint8 frame, got list"),
                     ("task", "'task' must be a string of at most 2000 characters, got list")]:
        with pytest.raises(ValueError) as refused:
            lerobot_grpc.robot_values({**good, key: bomb}, mapping_of(("shoulder_pan.pos",), {"front": "w"}))
        assert str(refused.value) == why
    with pytest.raises(ValueError, match="'task' must be a string of at most 2000 characters, got 2001 characters"):
        lerobot_grpc.robot_values({**good, "task": "x" * 2001}, mapping_of(("shoulder_pan.pos",), {}))
    for number in (10**400, float("nan"), True):
        with pytest.raises(ValueError, match="must be a finite number"):
            lerobot_grpc.robot_values({**good, "shoulder_pan.pos": number}, mapping_of(("shoulder_pan.pos",), {}))
    setup = lerobot_pickle(monkeypatch, "RemotePolicyConfig", {
        "policy_type": "groot", "pretrained_name_or_path": "m", "actions_per_chunk": 16, "device": "cpu",
        "lerobot_features": {"observation.state": bomb}})
    with pytest.raises(ValueError) as refused:
        read_policy_setup(setup, 2**20)
    assert str(refused.value).endswith("with the robot's joint names, got list")


def mapping_of(joint_keys, camera_map):
    """The parts of a `LeRobotMapping` that `robot_values` reads."""
    import types

    return types.SimpleNamespace(joint_keys=joint_keys, adapter=types.SimpleNamespace(camera_map=camera_map))
