"""Decode bombs (issue 47): 50 MB of nested empty msgpack lists or maps, under the byte limit, took a server from
0.4 to 4.9 GB and held its loop for 20-33 s, every robot waiting, and needed no token. Now the message's structure is
walked before anything is built and its token read before its payload: the bomb costs a bounded amount of memory
and time, and every other robot keeps being served. No duration is asserted: the clients wait with NVIDIA's own
15 s timeout, which the bombs used to outlast."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq

from gr00t_fast.dev.hostile import BOMB_KINDS, decode_bomb
from gr00t_fast.dev.served import serve
from gr00t_fast.serve import protocol

from fakes import observation

CLIENT_TIMEOUT_MS = 15_000  # NVIDIA's PolicyClient's default
TOKEN = "s3cret"


@pytest.mark.parametrize("kind", BOMB_KINDS)
def test_the_structure_is_refused_before_anything_is_built(kind):
    bomb = decode_bomb(50, kind)
    assert 45e6 < len(bomb) < 55e6
    with pytest.raises(protocol.ProtocolError, match="more than 4096 maps and lists"):
        protocol.check_structure(bomb)
    with pytest.raises(protocol.ProtocolError, match="more than 4096 maps and lists"):
        protocol.unpack(bomb)
    assert protocol.request_token(decode_bomb(1, kind, api_token=TOKEN)) == TOKEN


def test_real_messages_pass_the_walk_and_their_token_is_read_alone():
    for array_format in protocol.ARRAY_FORMATS:
        message = protocol.pack(protocol.make_request("get_action", observation(batch=4), api_token=TOKEN),
                                array_format)
        protocol.check_structure(message)
        assert protocol.request_token(message) == TOKEN
        assert protocol.unpack(message)["data"]["state.gripper"].shape == (4, 1, 1)
    batch = protocol.pack({"data": {"annotation.human.task_description": ["pick"] * protocol.MAX_LIST_ITEMS}})
    protocol.check_structure(batch)  # a full list of instructions is within the budget
    assert protocol.request_token(batch) is None
    for cut in (1, 7, 100):
        with pytest.raises(protocol.ProtocolError, match="cut short"):
            protocol.check_structure(message[:-cut] if cut < 100 else message[:3])
    with pytest.raises(protocol.ProtocolError, match="more than 100 values"):
        protocol.check_structure(msgpack.packb(list(range(200))), max_objects=100)
    with pytest.raises(protocol.ProtocolError, match="type byte 0xd4"):
        protocol.check_structure(msgpack.packb({"x": msgpack.ExtType(1, b"a")}))
    with pytest.raises(protocol.ProtocolError, match="'api_token' must be a string"):
        protocol.request_token(msgpack.packb({"api_token": 1}))


@pytest.mark.slow
def test_bombs_without_a_token_cost_the_server_bounded_memory_and_other_robots_nothing(tiny_checkpoint, tmp_path):
    """A real server with --api_token and the byte limit the bombs were under (64 MB, the default is 32 now): a robot
    pings and asks for actions throughout while an unauthenticated
    client sends 50 MB bombs of both kinds, three of each. Every bomb gets its one-line error reply within the
    clients' timeout, every call of the robot is answered, and the server's peak RSS grows by at most twice one
    message (it grew by 4.5 GB)."""
    bombs = [decode_bomb(50, kind) for kind in BOMB_KINDS for _ in range(3)]
    with serve(tiny_checkpoint, tmp_path / "serve.log", "--max_message_mb", "64", api_token=TOKEN) as served, \
            served.client(timeout_ms=CLIENT_TIMEOUT_MS) as robot:
        want = robot.get_action(observation(1))
        steady_kb = served.status_kb("VmRSS")
        served.reset_peak()
        done, failures, calls = threading.Event(), [], [0]

        def drive() -> None:  # the robot next to the attacker
            while not done.is_set() or not calls[0]:
                try:
                    assert robot.ping()
                    got = robot.get_action(observation(1))
                    assert set(got) == set(want) and all(np.isfinite(got[k]).all() and got[k].shape == want[k].shape
                                                         for k in want)
                    calls[0] += 1
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    failures.append(repr(e))
                    return

        robot_thread = threading.Thread(target=drive)
        robot_thread.start()
        attacker = zmq.Context.instance().socket(zmq.REQ)
        attacker.setsockopt(zmq.LINGER, 0)
        attacker.setsockopt(zmq.RCVTIMEO, CLIENT_TIMEOUT_MS)
        attacker.connect(f"tcp://127.0.0.1:{served.port}")
        try:
            for bomb in bombs:
                attacker.send(bomb, copy=False)
                error = protocol.unpack(attacker.recv())["error"]  # zmq.Again: the bomb outlasted the client
                assert "more than 4096 maps and lists" in error and "\n" not in error, error
        finally:
            done.set()
            robot_thread.join(CLIENT_TIMEOUT_MS / 1000 * 3)
            attacker.close()
        growth_mb = (served.status_kb("VmHWM") - steady_kb) / 1024
        print(f"peak RSS growth {growth_mb:.1f} MB")
        assert not failures and calls[0], failures
        assert robot.ping()
        assert served.stop() == 0
    assert growth_mb < 2 * len(bombs[0]) / 2**20, f"peak RSS grew by {growth_mb:.0f} MB for a 50 MB message"
