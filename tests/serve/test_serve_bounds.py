"""The pieces of serving under load, in-process: owned weights, request bounds, admission, the checkpoint watch,
the graceful stop of a PolicyServer (real sockets on loopback)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from gr00t_fast.policy.bounds import RequestBounds, RequestTooLarge
from gr00t_fast.loading import load_policy
from gr00t_fast.serve import PolicyClient, PolicyServer, ServerError, protocol
from gr00t_fast.serve.admission import Admission, Overloaded
from gr00t_fast.serve.watch import CheckpointWatch
from fakes import observation


@pytest.fixture(scope="module")
def copied_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path_factory.mktemp("owned") / "ckpt"))


def test_loaded_weights_never_alias_the_files(copied_checkpoint):
    """fp32 on CPU (the case that aliased safetensors' mapping): truncating every shard after the load changes
    no action, and no parameter lives in a file mapping."""
    policy = load_policy(copied_checkpoint, device="cpu", dtype="float32", warmup=False)
    noise = np.random.default_rng(3).standard_normal((16, 32)).astype(np.float32)
    before = policy.get_action(observation(), noise=noise)
    maps = Path("/proc/self/maps").read_text()
    for shard in copied_checkpoint.glob("*.safetensors"):
        assert str(shard) not in maps
        os.truncate(shard, 0)
    after = policy.get_action(observation(), noise=noise)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bounds_are_checked_before_any_resize(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False, max_batch=2)
    assert policy.get_action(observation(batch=2))["action.single_arm"].shape == (2, 16, 5)
    with pytest.raises(RequestTooLarge, match=r"a batch of 3 observations exceeds the bound of 2 per request "
                                              r"\(--max_batch\)"):
        policy.get_action(observation(batch=3, height=8, width=8))
    # 2 x 640x480 (each 8x8 frame counts its training resolution) fit; 100 such frames in one observation do not
    bounds = RequestBounds(max_batch=2)
    resized = policy.processor.resized_pixels
    assert bounds.check(observation(batch=2, height=8, width=8), resized) == 2
    temporal = {"video.webcam": np.zeros((1, 200, 8, 8, 3), np.uint8)}
    with pytest.raises(RequestTooLarge, match=r"count 61,440,000 pixels .* beyond the budget of 33,554,432"):
        bounds.check(temporal, resized)
    with pytest.raises(ValueError, match="must be >= 1"):
        RequestBounds(max_batch=0)


def test_admission_budgets_order_and_the_requests_it_refuses():
    admission = Admission(max_queue=100, timeout_s=15.0, concurrency=1)
    admission.check(running=1, budget_s=15.0)  # nothing measured yet: nothing is refused for time
    assert admission.budget_s(None) == 15.0 and admission.budget_s(4000) == 4.25 and admission.budget_s(60_000) == 15.0
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="'timeout_ms' must be a number of milliseconds > 0"):
            admission.budget_s(bad)
    admission.served(0.5)
    admission.check(running=1, budget_s=1.0)  # served next: 2 x 0.5 s
    with pytest.raises(Overloaded, match=r"1 get_action requests running at ~0.50 s each would keep this one waiting "
                                         r"~1.0 s, beyond its 0.9 s budget"):
        admission.check(running=1, budget_s=0.9)
    assert not admission.full(99) and admission.full(100)
    assert not admission.newest_first(1)  # 2 x 0.5 s drain within 1 s: first come, first served
    assert [admission.newest_first(2) for _ in range(4)] == [True, False, True, False]  # standing: in turn
    fresh = Admission(max_queue=100, timeout_s=15.0, concurrency=1)
    assert not fresh.newest_first(1) and fresh.newest_first(2)  # nothing measured: more wait than run at once
    with pytest.raises(ValueError, match="--max_queue must be >= 1"):
        Admission(0, 30.0, 1)


def test_checkpoint_watch_logs_each_change_once(copied_checkpoint, caplog):
    watch = CheckpointWatch(copied_checkpoint, interval_s=0)
    with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):
        watch.poll()
        assert not caplog.records
        (copied_checkpoint / "config.json").write_text((copied_checkpoint / "config.json").read_text() + " ")
        watch.poll()
        watch.poll()
    [record] = caplog.records
    assert "changed since it was loaded (config.json)" in record.getMessage()


class Gated:
    """A policy whose inferences wait for `gate`."""

    def __init__(self):
        self.gate = threading.Event()

    def get_action(self, observation):
        self.gate.wait(10)
        return {"action.x": np.zeros((16, 1), np.float32)}

    def get_modality_config(self):
        return {}


def test_stop_answers_received_requests_and_refuses_new_ones():
    """stop() with 3 requests received: new requests are refused, the received ones answered once the inference
    can run; with nothing able to run, the grace period ends with an error reply to each."""
    for grace_s, release in ((10.0, True), (0.3, False)):
        policy = Gated()
        server = PolicyServer(policy, port=0, poll_ms=5, grace_s=grace_s)
        thread = threading.Thread(target=server.run)
        thread.start()
        context, sockets = zmq.Context.instance(), []
        for _ in range(3):
            sock = context.socket(zmq.REQ)
            sock.setsockopt(zmq.RCVTIMEO, 15_000)
            sock.connect(server.address)
            sock.send(protocol.pack(protocol.make_request("get_action", observation())))
            sockets.append(sock)
        deadline = time.monotonic() + 15
        while len(server.queue) + len(server.in_flight) < 3:  # the loop has read the three requests
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with PolicyClient(port=server.port, timeout_ms=5000) as client:
            server.stop()
            with pytest.raises(ServerError, match="shutting down and takes no new requests"):
                client.ping()
        if release:
            policy.gate.set()
        replies = [protocol.unpack(sock.recv()) for sock in sockets]
        policy.gate.set()
        thread.join(15)
        assert not thread.is_alive()
        for sock in sockets:
            sock.close(linger=0)
        if release:
            assert all("action.x" in r for r in replies), replies
        else:
            assert all("grace period (--grace_s)" in r["error"] for r in replies), replies


class Recorder:
    """A policy that records which observations it computed (by their first state value); the first call waits for
    `gate`, every call takes `seconds`."""

    def __init__(self, seconds: float = 0.0):
        self.gate, self.seen, self.seconds = threading.Event(), [], seconds

    def get_action(self, observation):
        if not self.seen:
            self.gate.wait(10)
        time.sleep(self.seconds)
        self.seen.append(float(np.asarray(observation["state.single_arm"]).reshape(-1)[0]))
        return {"action.x": np.zeros((16, 1), np.float32)}

    def get_modality_config(self):
        return {}


def marked(value: float) -> dict:
    obs = observation()
    obs["state.single_arm"] = np.full_like(obs["state.single_arm"], value)
    return obs


def send(server, value: float, **request) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 15_000)
    sock.connect(server.address)
    sock.send(protocol.pack({**protocol.make_request("get_action", marked(value)), **request}))
    return sock


def wait_until(condition) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def replies_from(sockets: list[zmq.Socket], count: int) -> list[dict]:
    """The first `count` replies to arrive on any of `sockets` (each answered once)."""
    poller, replies = zmq.Poller(), []
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    deadline = time.monotonic() + 15
    while len(replies) < count:
        assert time.monotonic() < deadline, replies
        for sock, _ in poller.poll(100):
            replies.append(protocol.unpack(sock.recv()))
            poller.unregister(sock)
    return replies


def test_a_burst_of_abandoned_requests_does_not_lock_out_the_next_client():
    """Ten requests whose clients left (never read), a queue of four of 0.3 s inferences, a 2 s budget: the oldest
    are pushed out with an error reply, and the client that comes next is served right after the inference in
    flight, before the rest of the burst (the queue would drain beyond 1 s: newest and oldest in turn)."""
    policy = Recorder(seconds=0.3)
    server = PolicyServer(policy, port=0, poll_ms=5, max_queue=4, request_timeout_s=2.0)
    with server.in_thread():
        burst = [send(server, float(i)) for i in range(10)]
        # the whole burst read (ZeroMQ queues each client fairly, not in sending order): one in flight, four
        # waiting, five pushed out and answered
        early = replies_from(burst, 5)
        wait_until(lambda: server.in_flight and sum(1 for p in server.queue if p.envelope) == 4)
        legitimate = send(server, 99.0)
        wait_until(lambda: any(p.data["state.single_arm"].reshape(-1)[0] == 99.0 for p in server.queue))
        policy.gate.set()
        reply = protocol.unpack(legitimate.recv())
        assert "action.x" in reply, reply
        assert policy.seen[1] == 99.0, policy.seen  # the one in flight first, then the newcomer
        assert all("dropped from the queue for newer requests" in r.get("error", "") for r in early), early
        for sock in [*burst, legitimate]:
            sock.close(linger=0)


def test_a_queued_request_past_its_clients_timeout_is_never_computed():
    policy = Recorder()
    server = PolicyServer(policy, port=0, poll_ms=5)
    with server.in_thread():
        first = send(server, 1.0)
        wait_until(lambda: server.in_flight)
        impatient = send(server, 2.0, timeout_ms=100)  # the client waits 100 ms
        reply = protocol.unpack(impatient.recv())
        assert "not answered within the 0.35 s budget (the client's timeout" in reply["error"], reply
        assert "its client has given up, it is not computed" in reply["error"]
        policy.gate.set()
        assert "action.x" in protocol.unpack(first.recv())
        with PolicyClient(port=server.port, timeout_ms=5000) as client:  # sends its own timeout_ms
            assert client.get_action(marked(3.0))["action.x"].shape == (16, 1)
        assert policy.seen == [1.0, 3.0]
        for sock in (first, impatient):
            sock.close(linger=0)


def test_an_idle_server_gives_its_free_heap_back_once(monkeypatch):
    import gr00t_fast.serve.server as server_module

    released = []
    monkeypatch.setattr(server_module, "release_freed_memory", lambda: released.append(time.monotonic()) or True)
    monkeypatch.setattr(server_module, "IDLE_RELEASE_S", 0.05)
    server = PolicyServer(Recorder(), port=0, poll_ms=5)
    with server.in_thread(), PolicyClient(port=server.port, timeout_ms=5000) as client:
        time.sleep(0.3)
        assert released == []  # nothing came since the start: nothing to give back
        server.policy.gate.set()
        client.get_action(marked(1.0))
        wait_until(lambda: len(released) == 1)
        time.sleep(0.3)
        assert len(released) == 1  # once per idle spell


def test_the_heap_settings_apply_on_glibc():
    import platform

    from gr00t_fast.runtime.heap import keep_freed_memory, release_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt and malloc_trim are glibc's")
    assert keep_freed_memory() and release_freed_memory()
