"""Real-time chunking: the sampler (mask, guidance, freeze) on a tiny model, the policy and server surface, the
control loop's prefix and delay bookkeeping, and a guided run on the MuJoCo simulation."""

import math

import numpy as np
import pytest
import torch

from gr00t_fast.control.loop import ControlConfig, ControlLoop
from gr00t_fast.control.telemetry import format_summary, summarize
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest, freeze_ramp, guidance_weight, rtc_sample, soft_mask
from gr00t_fast.loading import load_policy
from gr00t_fast.model.inputs import example_inputs
from fakes import FakePolicy, FakeRobot, make_loop

E1 = math.e - 1


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False)


@pytest.fixture(scope="module")
def reach_policy(tiny_checkpoint, tmp_path_factory):
    """A tiny checkpoint whose action head is fitted to the demo task (a few hundred steps)."""
    import shutil

    from gr00t_fast.dev.demo_task import fit_reach

    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path_factory.mktemp("reach") / "ckpt")
    fit_reach(checkpoint, steps=300, batch=32, progress=False)
    return load_policy(checkpoint, device="cpu", data_config="so100", warmup=False)


@pytest.fixture(scope="module")
def features(policy):
    """(model, backbone features, inputs, noise) of one example call."""
    model = policy.model
    inputs, noise = example_inputs(model.config, batch=1, seed=0)
    with torch.no_grad():
        return model, model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values), inputs, noise


def sample(features, noise, rtc=None):
    return sample_steps(features, noise, 4, rtc)


def sample_steps(features, noise, steps, rtc=None):
    model, feats, inputs, _ = features
    head = model.action_head
    with torch.no_grad():
        if rtc is None:
            return head.get_action(feats, inputs.state, inputs.embodiment_id, noise, steps)
        return rtc_sample(head, feats, inputs.state, inputs.embodiment_id, noise, steps, rtc)


# ------------------------------------------------------------------------------------------------- the math
def test_soft_mask_matches_hand_computed_values():
    # H=4, d=1, s=1: W = [1, c(e^c-1)/(e-1) with c=2/3 and 1/3, 0]
    c = np.array([2 / 3, 1 / 3])
    np.testing.assert_allclose(soft_mask(4, 1, 1), [1.0, *(c * np.expm1(c) / E1), 0.0], rtol=1e-6)
    np.testing.assert_allclose(soft_mask(4, 1, 1), [1.0, 0.367707, 0.076746, 0.0], atol=1e-6)
    # H=6, d=2, s=2: two rows at 1, the same decay after them, nothing in the last s rows
    np.testing.assert_allclose(soft_mask(6, 2, 2), [1.0, 1.0, 0.367707, 0.076746, 0.0, 0.0], atol=1e-6)
    # d=0, s=0: c_i = (5 - i)/6 over the whole chunk
    c = (5 - np.arange(5)) / 6
    np.testing.assert_allclose(soft_mask(5, 0, 0), c * np.expm1(c) / E1, rtol=1e-6)
    # d = H - s: hard prefix, no decay
    np.testing.assert_array_equal(soft_mask(6, 3, 3), [1, 1, 1, 0, 0, 0])


def test_freeze_ramp_and_guidance_weight():
    ramp = lambda t: (1 - math.exp(-6 * t)) / (1 - math.exp(-6))  # noqa: E731
    np.testing.assert_allclose(freeze_ramp(6, 1, 4, 6.0), [0, 0, ramp(1 / 3), ramp(2 / 3), 1, 1], rtol=1e-6)
    np.testing.assert_allclose(freeze_ramp(6, 1, 4, 6.0)[2], 0.866813, atol=1e-6)  # 1 - e^-2 over 1 - e^-6
    assert guidance_weight(0.0, 5.0) == 5.0  # clipped at beta where the formula diverges
    assert guidance_weight(0.5, 5.0) == pytest.approx(2.0)  # (1/4 + 1/4) / (1/4)
    assert guidance_weight(0.75, 5.0) == pytest.approx((0.75**2 + 0.25**2) / (0.75 * 0.25))
    assert guidance_weight(0.9, 5.0) == 5.0


# ---------------------------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("mode", ["guided", "guided-identity", "freeze"])
def test_zero_mask_equals_the_plain_sampler_exactly(features, mode):
    noise = features[3]
    plain = sample(features, noise)
    prefix = torch.randn(6, 6)
    for rtc in (RtcRequest(mode, torch.zeros(0, 0), 0),  # no prefix
                RtcRequest(mode, prefix, 0, execution_horizon=16)):  # a prefix, but no row guided: W = 0
        assert torch.equal(sample(features, noise, rtc), plain)


def test_guided_pulls_the_prefix_to_the_target_and_freeze_holds_it(features):
    _, _, _, noise = features
    other = torch.randn(noise.shape, generator=torch.Generator().manual_seed(7))
    target = sample(features, other)[0, 5:, :6]  # a previous chunk's tail: 11 rows, d = 3
    free = sample(features, noise)[0, :8, :6]
    guided = sample(features, noise, RtcRequest("guided", target, 3))[0, :8, :6]
    frozen = sample(features, noise, RtcRequest("freeze", target, 3))[0, :8, :6]
    distance = lambda x: float((x - target[:8]).norm(dim=1)[:4].mean())  # noqa: E731  rows d-1..d: the switch
    assert distance(guided) < 0.25 * distance(free)
    assert distance(frozen) < distance(free)
    torch.testing.assert_close(frozen[:4], target[:4], rtol=0, atol=0)  # frozen rows and the first executed one
    assert torch.isfinite(guided).all()


def test_freeze_starts_every_prefix_row_at_the_prefix(features):
    """The rows the prefix covers (frozen and ramped) start at Y, not at a mix with the noise: a ramped row moves
    with a fraction of the velocity and would keep part of any noise it started with. Other noise on those rows
    changes nothing; other noise after them does."""
    _, _, _, noise = features
    target = torch.linspace(-1, 1, 8 * 6).reshape(8, 6)
    rtc = RtcRequest("freeze", target, 3)
    first = sample(features, noise, rtc)
    covered, after = noise.clone(), noise.clone()
    covered[0, :8, :6] += 3.0
    after[0, 8:, :6] += 3.0
    assert torch.equal(sample(features, covered, rtc), first)
    assert not torch.equal(sample(features, after, rtc), first)


def test_guided_steers_an_int8_model_as_it_steers_the_float_one(policy, tiny_checkpoint, int8_at_every_size):
    """The guidance of one guided step (beta J^T W (Y - x1)) runs the VJP through the DiT's int8 layers: it moves the
    int8 model's chunk as the float model's within int8's rounding (1% here; 12% when autograd saw only each token's
    min and max in an int8 layer)."""
    int8 = load_policy(tiny_checkpoint, device="cpu", quantize="int8", warmup=False)
    assert int8.model.precision.quantization["converted"] > 0
    target = torch.linspace(-1, 1, 8 * 6).reshape(8, 6)
    moved = []
    for model in (policy.model, int8.model):
        inputs, noise = example_inputs(model.config, batch=1, seed=0)
        with torch.no_grad():
            features = (model, model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values), inputs,
                        noise)
        guided = sample_steps(features, noise, 1, RtcRequest("guided", target, 2, beta=3.0))
        moved.append(guided - sample_steps(features, noise, 1))
    assert float((moved[1] - moved[0]).norm() / moved[0].norm()) < 0.03


def test_guided_identity_is_the_guided_update_with_the_identity_jacobian(features):
    """One step (tau = 0, w = beta): x1 = noise + v (the plain one-step sample), guided-identity adds beta W (Y - x1)
    to it; the VJP version adds beta J^T W (Y - x1) instead, which differs."""
    _, _, _, noise = features
    target = torch.linspace(-1, 1, 8 * 6).reshape(8, 6)
    plain = sample_steps(features, noise, 1)
    weights = torch.zeros(16, 32)
    weights[:8, :6] = soft_mask(16, 2, 8)[:8, None]
    padded = torch.zeros(16, 32)
    padded[:8, :6] = target
    want = plain + 3.0 * weights * (padded - plain)
    got = sample_steps(features, noise, 1, RtcRequest("guided-identity", target, 2, beta=3.0))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    vjp = sample_steps(features, noise, 1, RtcRequest("guided", target, 2, beta=3.0))
    assert float((vjp - want).abs().max()) > 1e-3


@pytest.mark.slow
def test_guided_identity_pulls_harder_than_the_vjp_on_a_fitted_head(reach_policy):
    """A head fitted to a task (its denoised estimate hardly depends on x) is steered little through its Jacobian:
    on the previous chunk's continuation, guided-identity lands closer to the prefix than guided, and both closer
    than no guidance (fixed noise, the switch rows d-1..d+1)."""
    obs = reach_policy.dummy_observation()
    rng = np.random.default_rng(0)
    first = reach_policy.get_action(obs, noise=rng.standard_normal((16, 32)).astype(np.float32),
                                    rtc=RtcRequest("freeze", np.zeros((0, 0), np.float32), 0))[RTC_CHUNK_KEY]
    target, noise = first[4:], rng.standard_normal((16, 32)).astype(np.float32)
    distance = {}
    for mode in ("plain", "guided", "guided-identity"):  # plain: an empty prefix, the plain sampler exactly
        rtc = RtcRequest("freeze", np.zeros((0, 0)), 0) if mode == "plain" else RtcRequest(mode, target, 3)
        chunk = reach_policy.get_action(obs, noise=noise, rtc=rtc)[RTC_CHUNK_KEY]
        distance[mode] = float(np.abs(chunk[2:5] - target[2:5]).mean())
    assert distance["guided-identity"] < 0.7 * distance["guided"] and distance["guided"] < distance["plain"]


def test_policy_rtc_results_and_errors(policy):
    obs = policy.dummy_observation()
    noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    plain = policy.get_action(obs, noise=noise)
    first = policy.get_action(obs, noise=noise, rtc=RtcRequest("guided", np.zeros((0, 0), np.float32), 0))
    assert first.keys() == {*plain, RTC_CHUNK_KEY} and first[RTC_CHUNK_KEY].shape == (16, 6)
    for key in plain:
        np.testing.assert_array_equal(first[key], plain[key])
    again = policy.get_action(obs, rtc=RtcRequest("freeze", first[RTC_CHUNK_KEY][4:], 2))
    np.testing.assert_array_equal(again[RTC_CHUNK_KEY][:2], first[RTC_CHUNK_KEY][4:6])
    bad = {"prefix contains non-finite": RtcRequest("guided", np.full((3, 6), np.nan), 1),
           "rtc mode must be one of": RtcRequest("blend", np.zeros((3, 6)), 1),
           "rtc prefix is normalized actions": RtcRequest("guided", np.full((3, 6), 45.0), 1),  # degrees
           "expected shape (P <= 16, A <= 6)": RtcRequest("guided", np.zeros((17, 6)), 1),
           "inference_delay must be an integer in [0, 16]": RtcRequest("guided", np.zeros((3, 6)), 20),
           "beta must be a finite number > 0": RtcRequest("guided", np.zeros((3, 6)), 1, beta=float("inf"))}
    for message, rtc in bad.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            policy.get_action(obs, rtc=rtc)


def test_whole_graph_backends_refuse_rtc_in_one_sentence(policy):
    from gr00t_fast.backends import CompiledBackend
    from gr00t_fast.backends.graph import GraphBackend

    class Graphs(GraphBackend):
        name = "graphs"
        run = ensure_sampler = None

    inputs, noise = example_inputs(policy.config, batch=1)
    for backend in (Graphs(policy.model), CompiledBackend(policy.model, backend="aot_eager")):
        with pytest.raises(ValueError, match=f"backend '{backend.name}' does not support real-time chunking"):
            backend.rtc(inputs, noise, 4, RtcRequest("guided", np.zeros((0, 0)), 0))


def test_rtc_over_the_server(policy):
    from gr00t_fast.dev.bench.common import FixedNoisePolicy, local_server
    from gr00t_fast.serve import PolicyClient
    from gr00t_fast.serve.client import ServerError

    noise = np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32)
    fixed = FixedNoisePolicy(policy, noise, 4)
    obs = policy.dummy_observation()
    rtc = RtcRequest("guided", np.linspace(-1, 1, 36, dtype=np.float32).reshape(6, 6), 2, beta=4.0)
    with local_server(fixed).in_thread() as server, PolicyClient("127.0.0.1", server.port, timeout_ms=60000) as client:
        assert client.get_action(obs).keys() == fixed.get_action(obs).keys()  # without rtc: served as before
        remote, local = client.get_action(obs, rtc=rtc), fixed.get_action(obs, rtc=rtc)
        assert remote.keys() == local.keys()
        for key in local:
            np.testing.assert_array_equal(remote[key], local[key])
        with pytest.raises(ServerError, match="rtc prefix contains non-finite values"):
            client.get_action(obs, rtc=RtcRequest("guided", np.full((2, 6), np.inf, np.float32), 1))
        with pytest.raises(ServerError, match="'rtc.inference_delay' must be an integer"):
            client.call("get_action", {**obs, "rtc": {"mode": "guided", "prefix": np.zeros((2, 6)),
                                                      "inference_delay": "3"}})
        assert client.ping()


def test_fleet_batch_runs_each_robots_rtc_request(policy):
    """One fleet batch (prompts of different lengths) mixing guided (VJP and identity), frozen and plain robots: each
    row equals its robot's own unbatched call; a bad rtc request fails alone."""
    from gr00t_fast.dev.bench.common import bench_noise, bench_observation
    from gr00t_fast.serve.fleet_model import FleetModel

    observations = [bench_observation(policy, seed=i) for i in range(5)]
    for obs, prompt in zip(observations, ["go", "Pick up the red cube.", "wave", "Stack the blue blocks.", "x"]):
        obs[policy.data_config.language_key] = [prompt]
    noises = [bench_noise(policy, seed=i) for i in range(5)]
    prefix = np.linspace(-0.8, 0.8, 60, dtype=np.float32).reshape(10, 6)
    rtcs = [RtcRequest("guided", prefix, 3), None, RtcRequest("freeze", prefix[2:], 2),
            RtcRequest("guided-identity", prefix, 1, beta=2.0),
            RtcRequest("guided", np.full((2, 6), np.nan, np.float32), 1)]
    model = FleetModel(policy)
    results = model(observations, noises, [f"arm-{i}" for i in range(5)], rtcs)
    assert results[4] == "ValueError: rtc prefix contains non-finite values (NaN/inf)"
    for obs, noise, rtc, got in zip(observations[:4], noises, rtcs, results):
        want = policy.get_action(obs, noise=noise, rtc=rtc)
        assert got.keys() == want.keys() and (RTC_CHUNK_KEY in got) == (rtc is not None)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-5 * (1 if key == RTC_CHUNK_KEY else 100))
    assert model.batch_rows == {4: 1}
    assert model.robots == {f"arm-{i}": 1 for i in range(4)}  # answered requests per robot (arm-4's failed)
    # nothing of arm-0's rtc call carries over: the server keeps no per-robot state, the prefix travels with a request
    again = model([observations[0]], [noises[0]], ["arm-0"])[0]
    for key, value in policy.get_action(observations[0], noise=noises[0]).items():
        np.testing.assert_allclose(again[key], value, atol=1e-3)
    assert model.robots["arm-0"] == 2
    batched = bench_observation(policy, seed=0, batch=2)
    assert "send one observation, not a batch of 2" in model([batched], [None], [None], [rtcs[0]])[0]


# ------------------------------------------------------------------------------------------ the control loop
class FakeRtcPolicy(FakePolicy):
    """Clock chunks (row i targets observation step + i) with their normalized plan (the same / 1000); records
    every RTC request with the observed state."""

    def __init__(self):
        super().__init__(lambda state, call: state[0] + np.arange(16)[:, None] * np.ones(6))
        self.requests: list[tuple[float, RtcRequest]] = []

    def supports_rtc(self):
        return True

    def get_action(self, obs, *, noise=None, denoising_steps=None, rtc=None):
        out = super().get_action(obs)
        chunk = np.concatenate([out["action.single_arm"], out["action.gripper"]], axis=1)
        self.requests.append((float(obs["state.single_arm"][0][0]), rtc))
        return {**out, RTC_CHUNK_KEY: chunk / 1000}


def test_rtc_requires_async_and_a_policy_that_takes_it():
    with pytest.raises(ValueError, match="rtc=guided needs mode=async"):
        ControlConfig(mode="sync", rtc="guided")
    with pytest.raises(ValueError, match="rtc must be one of"):
        ControlConfig(rtc="blend")
    with pytest.raises(ValueError, match="needs a policy that supports real-time chunking"):
        make_loop(FakeRobot(), FakePolicy(lambda s, c: np.zeros((16, 6))), mode="async", rtc="guided")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_chunk_switch_jump_is_measured_with_and_without_blending(mode):
    """Chunks 10 apart: sync switches by the full 10, the blend's first action moves 1/(n+1) of the way."""
    robot, policy = FakeRobot(), FakePolicy(lambda s, call: np.full((16, 6), 10.0 * call))
    loop, _ = make_loop(robot, policy, mode=mode, fps=50, action_horizon=8, queue_threshold=5)
    summary = summarize(loop.run(max_steps=24))
    jumps = [r.chunk_jump_deg for r in loop.records if r.chunk_jump_deg is not None]
    assert summary["chunk_switches"] == len(jumps) == policy.calls - 1 >= 2
    assert all(j == 10.0 for j in jumps) if mode == "sync" else all(0 < j <= 5.0 for j in jumps)
    line = f"Chunk-switch jump: mean {np.mean(jumps):.2f} deg, max {np.max(jumps):.2f} deg ({len(jumps)} chunk switches)"
    assert line in format_summary(summary)


def test_rtc_delay_is_counted_from_the_queue():
    """The queue runs dry during each call (threshold 2, a call lasts ~6 periods): the step delta and the actions
    popped differ, and the new chunk continues from the popped count; the prefix is the queued plan."""
    robot, policy = FakeRobot(clock=True), FakeRtcPolicy()
    loop, errors = make_loop(robot, policy, mode="async", fps=50, action_horizon=16, inject_delay=0.12,
                             queue_threshold=2, rtc="freeze")
    loop.warmup()
    records = loop.run(max_steps=60)
    assert not errors
    # observation n is the robot's n-th get_observation; the warm-up took n=0, so step k observes k + 1
    requests = [(int(state) - 1, rtc) for state, rtc in policy.requests[1:]]
    switches = [r.step for r in records if r.chunk_jump_deg is not None]
    assert len(switches) >= 2
    measured = []
    for (step, rtc), switch in zip(requests[1:], switches):
        popped = sum(not r.hold for r in records[step:switch])
        assert popped < switch - step  # the queue ran dry: the step delta would drop too many rows
        # the prefix is the plan of the queued actions: row 0 is this step's action of the previous chunk
        np.testing.assert_allclose(rtc.prefix[:, 0] * 1000, robot.sent[step][0] + np.arange(len(rtc.prefix)), rtol=1e-5)
        # the request's d: one more than the most popped during the previous (up to 4) calls, at most the prefix
        if measured:
            assert rtc.inference_delay == min(1 + max(measured[-4:]), len(rtc.prefix))
        measured.append(popped)
        # the first action executed from the new chunk is its row `popped`
        assert robot.sent[switch][0] == step + 1 + popped


def test_rtc_delay_has_a_margin_of_one_action():
    """With a deep queue (the prefix outlasts the call), d is one more than the most actions popped during the
    previous (up to 4) calls: a d too small would start execution inside the blend of the two plans."""
    robot, policy = FakeRobot(clock=True), FakeRtcPolicy()
    loop, errors = make_loop(robot, policy, mode="async", fps=50, action_horizon=16, inject_delay=0.06,
                             queue_threshold=10, rtc="freeze")
    seen = []  # (delays measured so far, the request's d, its prefix length)
    request = loop._request

    def recording(*args, **kwargs):
        made = request(*args, **kwargs)
        seen.append((list(loop.rtc_delays), made.rtc.inference_delay, len(made.rtc.prefix)))
        return made

    loop._request = recording
    loop.warmup()
    loop.run(max_steps=80)
    assert not errors
    measured = [(max(delays), d, rows) for delays, d, rows in seen if delays]
    assert len(measured) >= 2 and all(rows > d for _, d, rows in measured)  # never capped by the prefix here
    assert all(d == 1 + most for most, d, _ in measured)


def test_guided_rtc_on_the_simulation(tiny_checkpoint):
    """A guided-RTC run on the MuJoCo SO-100 until three chunk switches (step-counted, no timing asserted)."""
    from gr00t_fast.robot import SimCameraConfig, SimSO100Config, make_robot

    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    robot = make_robot(SimSO100Config(seed=0, cameras={"front": SimCameraConfig(width=64, height=48)}), fps=20)
    config = ControlConfig(lang_instruction="pick", fps=20, mode="async", action_horizon=16, inject_delay=0.1,
                           rtc="guided")
    robot.connect()
    try:
        loop = ControlLoop(robot, policy, config, report=lambda msg: None)
        loop.on_step.append(lambda r: loop.stop() if sum(x.chunk_jump_deg is not None for x in loop.records) >= 3
                            else None)
        loop.warmup()
        records = loop.run(max_steps=2000)
    finally:
        robot.disconnect()
    assert loop.stop_reason == "stop requested" and not loop.errors
    assert np.isfinite([r.action for r in records]).all()
    summary = summarize(records)
    assert summary["chunk_switches"] == 3 and np.isfinite(summary["jump_max_deg"])
    assert "Chunk-switch jump: mean " in format_summary(summary)
