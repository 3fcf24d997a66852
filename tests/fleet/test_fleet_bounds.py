"""`fleet serve` under load (issue 26): the ZeroMQ front and the per-request preprocessing keep the batch and pixel
bounds, and the sockets are bound (Triton's ports checked) before the model loads."""

import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the fleet extra (nvidia-pytriton) is not installed")

from gr00t_fast import load_policy  # noqa: E402
from gr00t_fast.dev.bench.common import bench_noise, bench_observation  # noqa: E402
from gr00t_fast.serve.client import PolicyClient, ServerError  # noqa: E402
from gr00t_fast.serve.fleet_front import FleetFront  # noqa: E402
from gr00t_fast.serve.fleet_model import FleetModel  # noqa: E402
from gr00t_fast.serve.triton import free_port  # noqa: E402


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False, max_batch=2)


def test_the_zmq_front_refuses_over_bound_requests_at_arrival(policy):
    """Refused before anything is forwarded: no Triton runs behind this front."""
    front = FleetFront(policy, f"grpc://127.0.0.1:{free_port()}", concurrency=4, port=0, poll_ms=20)
    temporal = bench_observation(policy)
    temporal["video.webcam"] = np.zeros((1, 200, 8, 8, 3), np.uint8)
    with front.in_thread(), PolicyClient(port=front.port, timeout_ms=10_000) as client:
        with pytest.raises(ServerError, match=r"a batch of 3 observations exceeds the bound of 2 per request "
                                              r"\(--max_batch\)"):
            client.get_action(bench_observation(policy, batch=3))
        with pytest.raises(ServerError, match=r"beyond the budget of 33,554,432 .*--max_batch"):
            client.get_action(temporal)


def test_each_triton_request_is_bounded_on_its_own(policy):
    """A request of more rows than the bound fails alone; the other request of its batch gets its actions."""
    big, small = bench_observation(policy, batch=3), bench_observation(policy)
    results = FleetModel(policy)([big, small], [None, bench_noise(policy)], ["big", "small"])
    assert isinstance(results[0], str) and "exceeds the bound of 2 per request (--max_batch)" in results[0]
    assert results[1]["action.single_arm"].shape == (16, 5)


@pytest.mark.parametrize("taken", ["--port", "--grpc_port"])
def test_a_port_in_use_is_reported_before_the_model_loads(tiny_checkpoint, taken):
    ports = {flag: str(free_port()) for flag in ("--port", "--grpc_port", "--http_port", "--metrics_port")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports[taken] = str(busy.getsockname()[1])
        result = subprocess.run([sys.executable, "-m", "gr00t_fast.cli", "fleet", "serve", "--model_path",
                                 str(tiny_checkpoint), "--device", "cpu", *[a for kv in ports.items() for a in kv]],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "loading" not in result.stdout, result
    assert ("cannot bind the policy server" if taken == "--port" else "cannot bind Triton") in result.stderr


def test_a_data_config_the_checkpoint_cannot_serve_is_one_line_before_the_model_loads(tiny_checkpoint, tmp_path):
    """`fleet serve` checks the checkpoint's metadata against the data config before it loads (issue 58): each
    mistake on its own line, no "loading" line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: no\nvidoe_keys: [video.webcam]\nstate_keys: [state.single_arm]\n")
    ports = [a for flag in ("--port", "--grpc_port", "--http_port", "--metrics_port") for a in (flag, str(free_port()))]
    for data_config, lines in (("fourier_gr1_arms_only", 1), (str(bad), 5)):
        result = subprocess.run([sys.executable, "-m", "gr00t_fast.cli", "fleet", "serve", "--model_path",
                                 str(tiny_checkpoint), "--device", "cpu", "--data_config", data_config, *ports],
                                capture_output=True, text=True, timeout=120)
        err = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "loading" not in result.stdout + result.stderr, result
        assert err[0].startswith("gr00t-fast fleet: error:") and len(err) == lines, err
    assert "did you mean video_keys?" in result.stderr
