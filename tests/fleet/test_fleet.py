"""The fleet server (issue 17): the real Triton Inference Server (PyTriton) with dynamic batching, on loopback.

Runs where the `fleet` extra is installed (`bash .ci/fleet_env.sh` builds such an environment), skips elsewhere.
"""

import threading

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the fleet extra (nvidia-pytriton) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore:tritonclient.grpc doesn't support timeout")  # PyTriton's clients

from pytriton.client import ModelClient  # noqa: E402

from gr00t_fast import load_policy  # noqa: E402
from gr00t_fast.dev.bench.common import bench_noise, bench_observation  # noqa: E402
from gr00t_fast.serve.client import PolicyClient, ServerError  # noqa: E402
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest  # noqa: E402
from gr00t_fast.serve.fleet_front import FleetFront, triton_inputs  # noqa: E402
from gr00t_fast.serve.fleet_model import ERROR, MODEL_NAME, NOISE, FleetModel  # noqa: E402
from gr00t_fast.serve.triton import free_port, start_triton  # noqa: E402
from fakes import action_range

PROMPTS = ["go", "Pick up the red cube.", "Stack the three blue blocks on the plate, then wave twice.",
           "Open the drawer and put the sponge inside it carefully, then close it.", "x y", "wave",
           "Put the cup on the saucer.", "Push the green button twice, slowly."]


def robot_observation(policy, i: int) -> dict:
    obs = bench_observation(policy, seed=i)
    obs[policy.data_config.language_key] = [PROMPTS[i % len(PROMPTS)]]
    return obs


def assert_actions_close(policy, got: dict, want: dict) -> None:
    """Equal within 1e-5 of the model's normalized output (in robot units: 1e-5 of half each joint's range)."""
    assert got.keys() == want.keys()
    for key in want:
        tolerance = 1e-5 * action_range(policy, key) / 2
        assert (np.abs(got[key] - want[key]) <= tolerance).all(), f"{key}: {np.abs(got[key] - want[key]).max()}"


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False)


@pytest.fixture(scope="module")
def noise(policy):
    return bench_noise(policy)


@pytest.fixture(scope="module")
def fleet(policy, noise):
    """Triton's endpoints ({"grpc": url, "http": url}), its model, and the ZeroMQ front in front of it."""
    model = FleetModel(policy, noise=noise)
    grpc, http = free_port(), free_port()
    triton = start_triton(model, max_batch=8, max_queue_delay_ms=20, grpc_port=grpc, http_port=http,
                          metrics_port=free_port())
    urls = {"grpc": f"grpc://127.0.0.1:{grpc}", "http": f"http://127.0.0.1:{http}"}
    try:
        front = FleetFront(policy, urls["grpc"], concurrency=16, port=0, poll_ms=20)
        with front.in_thread():
            yield urls, model, front
    finally:
        triton.stop()


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_batched_equals_unbatched(policy, batch):
    """Mixed prompts, one batch: each robot gets the actions of its own unbatched call (fixed noise, fp32)."""
    observations = [robot_observation(policy, i) for i in range(batch)]
    noises = [bench_noise(policy, seed=i) for i in range(batch)]
    results = FleetModel(policy)(observations, noises, [f"robot-{i}" for i in range(batch)])
    for obs, noise, result in zip(observations, noises, results):
        assert_actions_close(policy, result, policy.get_action(obs, noise=noise))


def test_graph_buckets_pad_the_batch_without_changing_actions(policy, noise):
    """A compiling backend's batches (cuda-graph, compile) are padded to a bucket (rows and prompt length); the
    padding changes no robot's actions."""
    observations = [robot_observation(policy, i) for i in range(3)]
    model = FleetModel(policy, noise=noise, buckets=(1, 2, 4, 8))
    for obs, result in zip(observations, model(observations, [None] * 3, [None] * 3)):
        assert_actions_close(policy, result, policy.get_action(obs, noise=noise))
    assert model.batch_rows == {4: 1}


def test_malformed_request_fails_alone_in_its_batch(policy, noise):
    good = [robot_observation(policy, i) for i in range(3)]
    bad = robot_observation(policy, 3)
    bad[policy.data_config.state_keys[0]] = np.full_like(bad[policy.data_config.state_keys[0]], np.nan)
    model = FleetModel(policy, noise=noise)
    results = model([good[0], bad, good[1], ValueError("request misses input 'x'"), good[2]], [None] * 5, [None] * 5)
    assert "expected finite values" in results[1] and results[3] == "ValueError: request misses input 'x'"
    for obs, result in zip(good, [results[0], results[2], results[4]]):
        assert_actions_close(policy, result, policy.get_action(obs, noise=noise))
    assert model.batch_rows == {3: 1}


def test_triton_grpc_and_http_batches_concurrent_requests(policy, fleet):
    """Direct Triton clients (tritonclient through PyTriton's ModelClient), one malformed among them."""
    urls, model, _ = fleet
    model.batch_rows.clear()
    results: dict[int, dict] = {}

    def call(i: int) -> None:
        inputs, _ = triton_inputs(policy, robot_observation(policy, i), f"robot-{i}")
        inputs[NOISE] = bench_noise(policy, seed=i, batch=1)
        if i == 5:
            inputs[policy.data_config.state_keys[0]][:] = np.inf
        with ModelClient(urls["grpc" if i % 2 else "http"], MODEL_NAME, inference_timeout_s=120) as client:
            results[i] = client.infer_batch(**inputs)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(results) == list(range(6))
    assert b"expected finite values" in results[5][ERROR][0, 0]
    for i in range(5):
        assert results[i].pop(ERROR)[0, 0] == b""
        assert not results[i].pop(RTC_CHUNK_KEY).any()  # no rtc asked for: its output stays zero
        want = policy.get_action(robot_observation(policy, i), noise=bench_noise(policy, seed=i))
        assert_actions_close(policy, {k: v[0] for k, v in results[i].items()}, want)
    assert max(model.batch_rows) > 1, f"Triton formed no batch: {model.batch_rows}"
    assert {f"robot-{i}" for i in range(5)} <= set(model.robots)


def test_eight_concurrent_zmq_clients_and_a_malformed_one(policy, noise, fleet):
    """Eight robots on the Isaac ZeroMQ protocol at once, plus one sending garbage: all eight get their actions."""
    _, model, front = fleet
    model.batch_rows.clear()
    answers: dict[int, list] = {}

    def robot(i: int) -> None:
        robot_id = f"arm-{i}" if i % 2 else None  # the others go by their connection
        with PolicyClient(host="127.0.0.1", port=front.port, timeout_ms=120_000, robot_id=robot_id) as client:
            answers[i] = [client.get_action(robot_observation(policy, i)) for _ in range(2)]

    def vandal() -> None:
        with PolicyClient(host="127.0.0.1", port=front.port, timeout_ms=120_000) as client:
            bad = robot_observation(policy, 0)
            bad[policy.data_config.video_keys[0]] = bad[policy.data_config.video_keys[0]][..., :2]
            with pytest.raises(ServerError, match="3 RGB channels"):
                client.get_action(bad)
            with pytest.raises(ServerError, match="'rtc' needs 'inference_delay'"):
                client.get_action({**robot_observation(policy, 0), "rtc": {"mode": "guided", "prefix": np.zeros((2, 6))}})
            answers["vandal"] = client.ping()

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(8)] + [threading.Thread(target=vandal)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert answers.pop("vandal") is True
    assert sorted(answers) == list(range(8))
    for i, replies in answers.items():
        want = policy.get_action(robot_observation(policy, i), noise=noise)
        for got in replies:
            assert_actions_close(policy, got, want)
    assert max(model.batch_rows) > 1, f"Triton formed no batch: {model.batch_rows}"
    named = {f"arm-{i}" for i in range(1, 8, 2)}
    assert named <= set(model.robots) and all(model.robots[r] == 2 for r in named)
    assert len([r for r in model.robots if r not in named and not r.startswith("robot-")]) == 4  # routing ids


def test_rtc_requests_of_concurrent_robots_batch_through_the_front(policy, noise, fleet):
    """Real-time chunking per robot in one Triton batch: guided (VJP, identity), frozen and plain robots at once over
    the ZeroMQ front, each answered as its own unbatched call (the prefix and delay travel with the request)."""
    _, model, front = fleet
    model.batch_rows.clear()
    prefix = np.linspace(-0.8, 0.8, 60, dtype=np.float32).reshape(10, 6)
    rtcs = [RtcRequest("guided", prefix, 3), None, RtcRequest("freeze", prefix, 2),
            RtcRequest("guided-identity", prefix[4:], 1)]
    answers: dict[int, dict] = {}

    def robot(i: int) -> None:
        with PolicyClient(host="127.0.0.1", port=front.port, timeout_ms=120_000, robot_id=f"rtc-{i}") as client:
            answers[i] = client.get_action(robot_observation(policy, i), rtc=rtcs[i])

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(answers) == list(range(4))
    for i, rtc in enumerate(rtcs):
        want = policy.get_action(robot_observation(policy, i), noise=noise, rtc=rtc)
        got = answers[i]
        if rtc is not None:
            np.testing.assert_allclose(got.pop(RTC_CHUNK_KEY), want.pop(RTC_CHUNK_KEY), atol=1e-5)
        assert_actions_close(policy, got, want)
    assert max(model.batch_rows) > 1, f"Triton formed no batch: {model.batch_rows}"


def test_cli_fleet_serve_answers_isaac_clients_and_stops_on_sigterm(tiny_checkpoint):
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    command = [sys.executable, "-m", "gr00t_fast.cli", "fleet", "serve", "--model_path", str(tiny_checkpoint),
               "--device", "cpu", "--port", str(port), "--grpc_port", str(free_port()), "--http_port",
               str(free_port()), "--metrics_port", str(free_port()), "--max_batch", "4"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with PolicyClient(port=port, timeout_ms=500) as client:
            deadline = time.monotonic() + 180
            while not client.ping():
                assert proc.poll() is None and time.monotonic() < deadline, "fleet serve did not come up"
        with PolicyClient(port=port, timeout_ms=120_000) as client:
            policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
            action = client.get_action(robot_observation(policy, 0))
            assert {k: v.shape for k, v in action.items()} == {"action.single_arm": (16, 5), "action.gripper": (16, 1)}
            assert client.get_modality_config() == policy.get_modality_config()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output[-3000:]
        assert "Triton model 'gr00t'" in output
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


@pytest.mark.parametrize("argv, message", [([], "usage: gr00t-fast fleet serve"),
                                           (["serve", "--model_path", "x", "--max_batch", "0"], "--max_batch")])
def test_cli_fleet_bad_flags_get_one_line(argv, message, capsys):
    from gr00t_fast.serve.cli import fleet_main as main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("max_batch", [1, 8])
def test_cli_fleet_asks_its_warm_up_for_a_batch_where_it_takes_batches(tiny_checkpoint, monkeypatch, capsys,
                                                                        max_batch):
    from gr00t_fast.serve.cli import fleet_main as main

    asked = []

    def create_policy(config, *args, **options):
        asked.append(options)
        raise ValueError("stopped before the weights")

    monkeypatch.setattr("gr00t_fast.loading.create_policy", create_policy)
    assert main(["serve", "--model_path", str(tiny_checkpoint), "--max_batch", str(max_batch), "--port", "0"]) == 2
    assert "stopped before the weights" in capsys.readouterr().err
    assert [(o["max_batch"], o["warmup_batch"]) for o in asked] == [(max_batch, max_batch > 1)]


def test_api_token_guards_the_zmq_front_and_triton_inference(policy, noise):
    from pytriton.client.exceptions import PyTritonClientError

    from gr00t_fast.serve.triton import token_headers

    grpc, http = free_port(), free_port()
    triton = start_triton(FleetModel(policy, noise=noise), grpc_port=grpc, http_port=http, metrics_port=free_port(),
                          api_token="s3cret")
    try:
        inputs, _ = triton_inputs(policy, robot_observation(policy, 0), "robot-0")
        for url in (f"grpc://127.0.0.1:{grpc}", f"http://127.0.0.1:{http}"):
            with ModelClient(url, MODEL_NAME, inference_timeout_s=120) as client:
                with pytest.raises(PyTritonClientError):
                    client.infer_batch(**inputs)
                with pytest.raises(PyTritonClientError):
                    client.infer_batch(**inputs, headers=token_headers("wrong", url))
                assert client.infer_batch(**inputs, headers=token_headers("s3cret", url))[ERROR][0, 0] == b""
        front = FleetFront(policy, f"grpc://127.0.0.1:{grpc}", port=0, poll_ms=20, api_token="s3cret")
        with front.in_thread():
            with PolicyClient(port=front.port, timeout_ms=120_000) as client:
                with pytest.raises(ServerError, match="Unauthorized"):
                    client.get_action(robot_observation(policy, 0))
            with PolicyClient(port=front.port, timeout_ms=120_000, api_token="s3cret") as client:
                assert_actions_close(policy, client.get_action(robot_observation(policy, 0)),
                                     policy.get_action(robot_observation(policy, 0), noise=noise))
    finally:
        triton.stop()


def test_bench_fleet_writes_both_servers_rows(tiny_checkpoint, tmp_path):
    import json

    from gr00t_fast.dev import bench

    argv = ["fleet", "--model_path", str(tiny_checkpoint), "--robots", "1,3", "--duration", "1", "--out",
            str(tmp_path), "--reps", "2", "--warmup", "1"]
    assert bench.main(argv) == 0
    results = json.loads((tmp_path / "fleet.json").read_text())["results"]
    assert [(r["server"], r["robots"]) for r in results] == [("serial", 1), ("serial", 3), ("fleet", 1), ("fleet", 3)]
    for row in results:
        assert {"requests_per_s", "p50_ms", "p99_ms", "empty_queue_share"} <= set(row) and row["requests"] > 0
        assert row["failures"] == 0
    assert all(r["mean_batch"] >= 1 for r in results if r["server"] == "fleet")
    assert (tmp_path / "fleet.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("mode", [["--mode=sync"], ["--mode=async", "--rtc=guided", "--inject_delay=0.2"]])
def test_run_command_drives_a_robot_through_the_fleet_server(policy, fleet, tmp_path, mode):
    """`gr00t-fast run --policy_host` against the fleet's ZeroMQ front, unchanged but for its robot id; also with
    guided real-time chunking."""
    import importlib.util

    if importlib.util.find_spec("mujoco") is None:  # not imported here: the simulator picks its GL backend first
        pytest.skip("the simulated SO-100 needs MuJoCo (the sim extra)")
    from gr00t_fast.control import run

    _, model, front = fleet
    record = tmp_path / "steps.jsonl"
    rc = run.main(["--robot.type=so100_sim", "--policy_host=127.0.0.1", f"--policy_port={front.port}",
                   "--robot_id=sim-arm-1", "--policy_timeout_ms=120000", *mode, "--fps=10", "--max_steps=6",
                   "--action_horizon=4", f"--record={record}"])
    assert rc == 0 and len(record.read_text().splitlines()) == 6
    assert model.robots["sim-arm-1"] >= 2  # its chunks (and the first call run makes)


def test_ctrl_c_while_the_fleet_server_loads_ends_with_one_line():
    """`gr00t-fast fleet serve` interrupted during its load: exit 130 and one line, as `gr00t-fast serve`."""
    from gr00t_fast.model.random_checkpoint import cached_checkpoint
    from processes import assert_interrupted_while_loading

    checkpoint = cached_checkpoint("bench_small", "small")
    assert_interrupted_while_loading(["fleet", "serve", "--model_path", str(checkpoint), "--device", "cpu",
                                      "--port", str(free_port()), "--grpc_port", str(free_port()),
                                      "--http_port", str(free_port()), "--metrics_port", str(free_port())],
                                     "gr00t-fast fleet")


def test_nvidias_current_client_through_the_fleet_front(policy, noise, fleet, tiny_checkpoint):
    """Isaac-GR00T main's own PolicyClient (msgpack-numpy, nested requests) against the ZeroMQ front: ping, modality
    config, reset, get_action with one camera and a batch of two, a bad request then a good one; two cameras and an
    api token on a second Triton model."""
    from isaac_main import client_module, flat, nested_observation, nvidia_client

    _, _, front = fleet
    client = nvidia_client(front.port)
    try:
        assert client.ping() and client.reset(options=None) == {}
        config = client.get_modality_config()
        assert isinstance(config["video"], client_module().ModalityConfig)
        for observation in (nested_observation(0), nested_observation(1, batch=2)):
            action, info = client.get_action(observation)
            rows = len(observation["state"]["gripper"])  # batched: the noise of each row
            want = policy.get_action(flat(observation), noise=np.repeat(np.asarray(noise)[None], rows, axis=0))
            assert info == {}
            assert_actions_close(policy, {f"action.{k}": v for k, v in action.items()}, want)
        with pytest.raises(RuntimeError, match="observation.video has 'front'"):
            client.get_action(nested_observation(2, cameras=("front",)))
        assert np.isfinite(client.get_action(nested_observation(2))[0]["single_arm"]).all()
    finally:
        client.close()
    dualcam = load_policy(tiny_checkpoint, device="cpu", warmup=False, data_config="so100_dualcam")
    grpc = free_port()
    triton = start_triton(FleetModel(dualcam, noise=noise), grpc_port=grpc, http_port=free_port(),
                          metrics_port=free_port(), api_token="s3cret")
    try:
        front = FleetFront(dualcam, f"grpc://127.0.0.1:{grpc}", port=0, poll_ms=20, api_token="s3cret")
        with front.in_thread():
            stranger, member = nvidia_client(front.port), nvidia_client(front.port, api_token="s3cret")
            with pytest.raises(RuntimeError, match="Unauthorized"):
                stranger.get_action(nested_observation(3, cameras=("front", "wrist")))
            observation = nested_observation(3, cameras=("front", "wrist"))
            action, _ = member.get_action(observation)
            assert_actions_close(dualcam, {f"action.{k}": v for k, v in action.items()},
                                 dualcam.get_action(flat(observation), noise=np.asarray(noise)[None]))
            stranger.close()
            member.close()
    finally:
        triton.stop()
