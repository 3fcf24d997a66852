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


def test_admission_refuses_only_what_cannot_be_answered_in_time():
    admission = Admission(max_queue=100, timeout_s=30.0, concurrency=1)
    admission.check(queued=99, running=1)  # nothing measured yet: only the queue bound applies
    with pytest.raises(Overloaded, match=r"100 get_action requests already queued, the bound \(--max_queue 100\)"):
        admission.check(queued=100, running=1)
    admission.served(0.5)
    admission.check(queued=57, running=1)  # 59 x 0.5 s = 29.5 s: in time
    with pytest.raises(Overloaded, match=r"60 get_action requests ahead .* beyond the 30 s budget "
                                         r"\(--request-timeout-s\)"):
        admission.check(queued=59, running=1)
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
