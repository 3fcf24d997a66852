"""`gr00t-fast serve` under real load, as a real process on loopback with a tiny checkpoint: 64 concurrent robots,
requests beyond the batch and pixel bounds, its memory, SIGTERM mid-request, and checkpoint files rewritten under
it. No test asserts a duration: clients wait with generous timeouts, and what is checked is that every request
gets its reply and what the reply says."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import zmq

from gr00t_fast.dev.served import Served
from gr00t_fast.dev.served import serve as served_process
from gr00t_fast.serve import ServerError, protocol

from fakes import observation

REPO = Path(__file__).resolve().parents[2]
RSS_BOUND_MB_PER_MESSAGE_MB, RSS_BOUND_BASE_MB = 4, 256  # docs/guides/serve.md: "Memory"


@contextlib.contextmanager
def serve(checkpoint: Path, tmp_path: Path, *flags: str) -> Iterator[Served]:
    with served_process(checkpoint, tmp_path / f"serve-{time.monotonic_ns()}.log", "--device", "cpu", *flags) as served:
        yield served


def error_of(call) -> str:
    with pytest.raises(ServerError) as err:
        call()
    return str(err.value)


# --- 64 robots at once ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(1200)  # 1,280 inferences: about a minute on an idle 2-core machine, more on a busy one
@pytest.mark.slow
def test_64_concurrent_robots_are_all_answered(tiny_checkpoint, tmp_path):
    """Default flags: 64 clients x 20 get_action each, all at once: every request answered with actions.

    The server runs one torch thread: on a shared 2-core CI machine a 2-thread OpenMP team stalls at every barrier
    whose other thread is descheduled (measured here under load 7: 0.56 s per inference against 28 ms with one
    thread), and 64 queued robots would then truly not be answered within the 30 s budget."""
    robots, requests = 64, 20
    outcomes: list[list[str]] = [[] for _ in range(robots)]
    start = threading.Barrier(robots)

    def robot(i: int) -> None:
        with served.client() as client:
            start.wait()
            for r in range(requests):
                try:
                    action = client.get_action(observation(seed=i * requests + r))
                    shapes = (action["action.single_arm"].shape, action["action.gripper"].shape)
                    outcomes[i].append("ok" if shapes == ((16, 5), (16, 1)) else f"shapes {shapes}")
                except (ServerError, TimeoutError) as e:
                    outcomes[i].append(str(e))

    with serve(tiny_checkpoint, tmp_path, "--threads", "1") as served:
        threads = [threading.Thread(target=robot, args=(i,)) for i in range(robots)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert served.stop() == 0
    failures = [o for per_robot in outcomes for o in per_robot if o != "ok"]
    assert sum(map(len, outcomes)) == robots * requests and not failures, (len(failures), failures[:3])


# --- bounds ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_over_bound_requests_are_refused_at_once_and_memory_stays_bounded(tiny_checkpoint, tmp_path):
    """Batches beyond --max_batch and frames beyond the pixel budget get one line naming the batch, the bound and
    the flag; a request filling --max-message-mb with one maximal frame is served; the server's peak RSS above its
    steady state stays within the bound docs/guides/serve.md states for that message size."""
    message_mb = 64  # above the default (32): one 4096 x 4096 frame, the largest accepted, is 48 MiB
    with serve(tiny_checkpoint, tmp_path, "--max_message_mb", str(message_mb)) as served, \
            served.client(timeout_ms=10_000) as client:
        for seed in range(3):
            client.get_action(observation(seed))  # steady state: warm allocator, queues, codecs
        steady_kb = served.status_kb("VmRSS")
        served.reset_peak()
        for batch in (2, 1024):  # the probe: 1,024 8x8 frames, 270 KB on the wire
            text = error_of(lambda: client.get_action(observation(batch=batch, height=8, width=8)))
            assert f"a batch of {batch} observations exceeds the bound of 1 per request (--max_batch)" in text, text
            assert "\n" not in text
        temporal = observation()
        temporal["video.webcam"] = np.zeros((1, 600, 8, 8, 3), np.uint8)  # 600 frames in one observation
        text = error_of(lambda: client.get_action(temporal))
        assert "beyond the budget of 16,777,216" in text and "--max_batch" in text and "\n" not in text, text
        largest = observation(height=4096, width=4096)  # 48 MiB of pixels: the largest frame accepted
        action = client.get_action(largest)
        assert np.isfinite(action["action.single_arm"]).all()
        assert client.get_action(observation(7))["action.gripper"].shape == (16, 1)
        growth_mb = (served.status_kb("VmHWM") - steady_kb) / 1024
        assert served.stop() == 0
    bound_mb = RSS_BOUND_MB_PER_MESSAGE_MB * message_mb + RSS_BOUND_BASE_MB
    assert growth_mb < bound_mb, f"peak RSS {growth_mb:.0f} MB above the steady state (bound {bound_mb} MB)"


@pytest.mark.slow
def test_max_batch_flag_admits_batches(tiny_checkpoint, tmp_path):
    with serve(tiny_checkpoint, tmp_path, "--max_batch", "3") as served, served.client() as client:
        assert client.get_action(observation(batch=3))["action.single_arm"].shape == (3, 16, 5)
        text = error_of(lambda: client.get_action(observation(batch=4)))
        assert "a batch of 4 observations exceeds the bound of 3 per request (--max_batch)" in text
        assert served.stop() == 0


# --- graceful stop --------------------------------------------------------------------------------------------------


def requests_in_flight(port: int, count: int) -> tuple[list[zmq.Socket], zmq.Poller]:
    """`count` REQ sockets, each with a get_action sent."""
    context, poller, sockets = zmq.Context.instance(), zmq.Poller(), []
    for i in range(count):
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(protocol.pack(protocol.make_request("get_action", observation(seed=i))))
        poller.register(sock, zmq.POLLIN)
        sockets.append(sock)
    return sockets, poller


def replies_of(sockets: list[zmq.Socket], poller: zmq.Poller, timeout_s: float) -> list[dict]:
    replies: dict[int, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(replies) < len(sockets) and time.monotonic() < deadline:
        for sock, _ in poller.poll(100):
            replies[sockets.index(sock)] = protocol.unpack(sock.recv())
            poller.unregister(sock)
    for sock in sockets:
        sock.close()
    return [replies.get(i, {"missing": True}) for i in range(len(sockets))]


@pytest.mark.parametrize("grace_s", ["60", "0"])
@pytest.mark.slow
def test_sigterm_answers_every_request_received_then_exits_0(tiny_checkpoint, tmp_path, grace_s):
    """10 robots mid-request when SIGTERM lands: each gets a reply and the server exits 0. Every request the server
    had received (its log says how many) gets its actions within the grace period; one that arrives after the
    signal is refused in one line. With --grace_s 0 nothing waits: the error replies go out at once. (128 denoising
    steps make each inference long enough for the signal to land mid-queue; 60 s of grace cover a busy machine.)"""
    with serve(tiny_checkpoint, tmp_path, "--grace_s", grace_s, "--denoising-steps", "128") as served:
        sockets, poller = requests_in_flight(served.port, 10)
        time.sleep(0.3)  # let the server read them (one that comes later is refused, not answered)
        code = served.stop(timeout_s=120)
        replies = replies_of(sockets, poller, timeout_s=30)
    assert code == 0, served.output()
    assert all("missing" not in r for r in replies), replies
    unanswered = int(re.search(r"stopping: (\d+) get_action requests received", served.output()).group(1))
    answered = [r for r in replies if "action.single_arm" in r]
    refused = [r["error"] for r in replies if "error" in r]
    late = [e for e in refused if "shutting down and takes no new requests" in e]  # arrived after the signal
    out_of_grace = [e for e in refused if "stopped before answering within its" in e and "(--grace_s)" in e]
    assert len(answered) + len(late) + len(out_of_grace) == 10, refused
    if grace_s == "60":  # every request unanswered at the signal was answered within the grace period
        assert not out_of_grace and len(answered) >= unanswered > 0, (unanswered, refused)
    else:  # nothing waits: each unanswered one got its error reply
        assert len(out_of_grace) == unanswered, (unanswered, refused)


@pytest.mark.slow
def test_an_address_in_use_is_reported_before_the_model_loads(tiny_checkpoint):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "gr00t_fast.cli", "serve", "--model-path",
                                 str(tiny_checkpoint), "--port", str(taken.getsockname()[1]), "--device", "cpu"],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cannot bind the policy server" in result.stderr and "loading" not in result.stdout, result


# --- weights that cannot change under a running server ------------------------------------------------------------


@pytest.mark.slow
def test_rewritten_checkpoint_files_change_nothing_but_a_log_line(tiny_checkpoint, tmp_path):
    """Another checkpoint's shards copied over the served ones (in place, as cp does), then every shard truncated:
    the server keeps answering with the actions of the checkpoint it loaded, and says in its log that the folder
    changed. The reference: the same checkpoint in-process, with the same seed and warm-up (the same noise)."""
    from gr00t_fast.model.random_checkpoint import write_checkpoint
    from gr00t_fast.loading import load_policy

    served_ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "served"))
    other = tmp_path / "other"
    write_checkpoint(other, size="tiny", seed=1, progress=False)
    shards = sorted(served_ckpt.glob("*.safetensors"))
    assert [s.name for s in shards] == sorted(s.name for s in other.glob("*.safetensors"))
    reference = load_policy(tiny_checkpoint, device="cpu", warmup=True)  # the serve command's seed and warm-up
    expected = [reference.get_action(observation(seed)) for seed in range(3)]
    changed = load_policy(other, device="cpu", warmup=True).get_action(observation(0))["action.single_arm"]
    assert not np.allclose(changed, expected[0]["action.single_arm"], atol=1e-2)  # the test can tell them apart
    with serve(served_ckpt, tmp_path) as served, served.client() as client:
        got = [client.get_action(observation(0))]
        for shard in shards:
            shutil.copyfile(other / shard.name, shard)  # truncates and rewrites the same inode
        got.append(client.get_action(observation(1)))
        for shard in shards:
            os.truncate(shard, 0)
        time.sleep(2.5)  # the folder is looked at every 2 s
        got.append(client.get_action(observation(2)))
        assert served.stop() == 0
    for want, have in zip(expected, got):
        for key in want:
            np.testing.assert_allclose(have[key], want[key], rtol=1e-5, atol=1e-4)
    assert "changed since it was loaded" in served.output() and "restart the server" in served.output()


def test_bench_server_clients_reports_latency_percentiles(tiny_checkpoint, tmp_path, capsys):
    import json

    from gr00t_fast.dev import bench

    argv = ["server", "--model_path", str(tiny_checkpoint), "--device", "cpu", "--clients", "4", "--requests", "2",
            "--out", str(tmp_path), "--reps", "1", "--warmup", "0"]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "server.json").read_text())
    assert (result["requests"], result["answered"], result["overloaded"], result["failed"]) == (8, 8, 0, 0)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] and result["requests_per_s"] > 0
    assert "| Clients |" in (tmp_path / "server.md").read_text()
    assert bench.main(["server", "--clients", "-1"]) == 2
    assert "--clients must be >= 0" in capsys.readouterr().err
