"""Gr00tPolicy on a random tiny checkpoint: batching, step control, timings, modality config, errors."""

import json

import numpy as np
import pytest

from gr00t_fast.backends import make_backend
from gr00t_fast.policy.config import PolicyConfig
from gr00t_fast.loading import load_policy


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=True)


def observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video.webcam": rng.integers(0, 256, (1, 480, 640, 3), dtype=np.uint8),
        "state.single_arm": rng.uniform(-90, 90, (1, 5)),
        "state.gripper": rng.uniform(0, 100, (1, 1)),
        "annotation.human.task_description": ["Pick up the red cube and put it in the box."],
    }


def test_batched_equals_unbatched(policy):
    noise = np.random.default_rng(7).standard_normal((2, 16, 32)).astype(np.float32)
    singles = [policy.get_action(observation(i), noise=noise[i]) for i in range(2)]
    obs = [observation(i) for i in range(2)]
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0] if k.startswith(("video", "state"))}
    batch["annotation.human.task_description"] = [o["annotation.human.task_description"][0] for o in obs]
    out = policy.get_action(batch, noise=noise)
    for key in ("action.single_arm", "action.gripper"):
        assert out[key].shape == (2, 16, singles[0][key].shape[-1])
        for i in range(2):
            np.testing.assert_allclose(out[key][i], singles[i][key], atol=1e-3)


def test_left_padded_batch_runs(policy):
    # Upstream keeps position ids 0..L-1 under left padding, so a padded row is not bit-equal to its
    # unbatched run; it must still go through with its mask.
    obs = [observation(i) for i in range(2)]
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0] if k.startswith(("video", "state"))}
    batch["annotation.human.task_description"] = np.array([["Fold the napkin."], ["Pick up the red cube and put it in the box."]])
    out = policy.get_action(batch)
    assert out["action.single_arm"].shape == (2, 16, 5) and np.isfinite(out["action.single_arm"]).all()


def test_denoising_steps_override_and_determinism(policy):
    obs, noise = observation(0), np.random.default_rng(3).standard_normal((16, 32)).astype(np.float32)
    default = policy.get_action(obs, noise=noise)
    assert policy.denoising_steps == 4
    np.testing.assert_array_equal(policy.get_action(obs, noise=noise, denoising_steps=4)["action.single_arm"], default["action.single_arm"])
    one_step = policy.get_action(obs, noise=noise, denoising_steps=1)
    assert not np.allclose(one_step["action.single_arm"], default["action.single_arm"])
    with pytest.raises(ValueError, match="denoising_steps must be an integer >= 1, received 0"):
        policy.get_action(obs, denoising_steps=0)
    with pytest.raises(ValueError, match=r"noise: expected shape \(16, 32\), received \(2, 16, 32\)"):
        policy.get_action(obs, noise=np.zeros((2, 16, 32), np.float32))


def test_random_noise_when_none(policy):
    out = policy.get_action(observation(0))
    assert out["action.single_arm"].shape == (16, 5) and out["action.gripper"].shape == (16, 1)
    assert not np.array_equal(out["action.single_arm"], policy.get_action(observation(0))["action.single_arm"])


def test_timings(policy):
    policy.get_action(observation(1))
    timings = policy.timings
    assert timings["count"] >= 1
    for stat in ("last", "mean", "p50", "p90", "max"):
        assert set(timings[stat]) == {"preprocess", "model", "backbone", "action_head", "postprocess", "total"}
        assert all(v >= 0 for v in timings[stat].values())
    last = timings["last"]
    assert last["total"] == pytest.approx(last["preprocess"] + last["model"] + last["postprocess"])
    assert policy.backend.stage_ms().keys() == {"backbone", "action_head"}
    report = policy.timing_report().splitlines()
    assert report[0].startswith(f"get_action, the last {timings['count']} calls (ms)")
    total = next(line for line in report if line.split()[0] == "total").split()
    assert float(total[1]) == pytest.approx(timings["p50"]["total"], abs=0.05)  # p50 column, in ms
    assert any(line.split()[:3] == ["of", "which", "backbone"] for line in report)
    assert f"precision: {policy.precision}" in policy.timing_report()
    assert timings["backend"]["name"] == "torch" and "the default" in timings["backend"]["reason"]
    assert f"backend: {timings['backend']['reason']}" in policy.timing_report()


def test_modality_config_and_attributes(policy):
    config = policy.get_modality_config()
    assert json.loads(json.dumps(config)) == config
    assert config["video"] == {"delta_indices": [0], "modality_keys": ["video.webcam"]}
    assert config["state"]["modality_keys"] == ["state.single_arm", "state.gripper"]
    assert config["action"] == {"delta_indices": list(range(16)), "modality_keys": ["action.single_arm", "action.gripper"]}
    assert config["language"]["modality_keys"] == ["annotation.human.task_description"]
    assert policy.video_resolution == {"video.webcam": (640, 480)}
    assert policy.action_horizon == 16 and policy.data_config.name == "so100"


def test_load_errors(tiny_checkpoint):
    with pytest.raises(ValueError, match="embodiment tag 'gr1' not in .*available: new_embodiment"):
        load_policy(tiny_checkpoint, embodiment_tag="gr1", warmup=False)
    with pytest.raises(ValueError, match="unknown data config .so101.; known: auto, agibot_genie1, .*, so100, so100_dualcam, unitree_g1"):
        load_policy(tiny_checkpoint, data_config="so101", warmup=False)


def test_metadata_data_config(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, data_config="metadata", device="cpu", warmup=False)
    assert policy.data_config.video_keys == ("video.webcam", "video.front", "video.wrist")


def test_unknown_backend(policy):
    with pytest.raises(ValueError, match="unknown backend 'nope'; available: .*torch"):
        make_backend("nope", policy.model)


def test_policy_config_is_shared_by_run_serve_and_bench():
    from gr00t_fast.control.run import RunConfig, parse
    from gr00t_fast.serve.cli import serve_parser as build_parser

    dashed = build_parser().parse_args(["--model-path", "ckpt", "--backend", "onnxruntime", "--backend-dir", "out/onnx",
                                        "--denoising-steps", "2", "--dtype", "bfloat16"])
    from gr00t_fast.policy.config import policy_config_from_args

    served = policy_config_from_args(dashed)
    assert served == PolicyConfig(model_path="ckpt", backend="onnxruntime", backend_dir="out/onnx", denoising_steps=2,
                                  dtype="bfloat16")
    run = parse(["--model_path=ckpt", "--backend=onnxruntime", "--backend_dir=out/onnx", "--denoising_steps=2",
                 "--dtype=bfloat16", "--seed=3"])
    assert isinstance(run, RunConfig) and isinstance(run, PolicyConfig)
    assert run.load_kwargs() == {**served.load_kwargs(), "seed": 3}
    assert run.load_kwargs("demo")["model_path"] == "demo"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model-path", "ckpt", "--backend", "tvm"])  # Literal choices
    with pytest.raises(ValueError, match="denoising_steps must be >= 1"):
        PolicyConfig(denoising_steps=0)


def test_backend_dir_only_for_artifact_backends(tiny_checkpoint):
    with pytest.raises(ValueError, match="backend_dir holds exported graphs or engines; backend 'torch' runs"):
        load_policy(tiny_checkpoint, device="cpu", backend="torch", backend_dir="x", warmup=False)


def test_seed_goes_through_load_policy(tiny_checkpoint):
    obs = None
    outs = []
    for seed in (5, 5, 6):
        policy = load_policy(tiny_checkpoint, device="cpu", seed=seed, warmup=False)
        obs = obs or policy.dummy_observation()
        outs.append(policy.get_action(obs)["action.single_arm"])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


@pytest.mark.slow
def test_inference_path_imports_no_dev_tool_and_no_exporter(tiny_checkpoint):
    """Loading a policy and acting imports neither the development tools nor an exporter (torch backend): of
    export/, only `export.artifacts`, of which a torch backend asks nothing."""
    import subprocess
    import sys

    code = ("import sys; from gr00t_fast import load_policy;"
            f"p = load_policy({str(tiny_checkpoint)!r}, device='cpu', warmup=False); p.get_action(p.dummy_observation());"
            "print(sorted(m for m in sys.modules if m.startswith(('gr00t_fast.dev', 'gr00t_fast.export.'))"
            " and m != 'gr00t_fast.export.artifacts'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_calls_reuse_freed_memory_instead_of_faulting_pages_in(tiny_checkpoint):
    """glibc keeps freed buffers (`policy.heap`): warm calls take (almost) no fresh pages from the kernel."""
    import resource

    policy = load_policy(tiny_checkpoint, device="cpu")
    obs = policy.dummy_observation()
    for _ in range(3):
        policy.get_action(obs)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        policy.get_action(obs)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5 < 200  # ~1,500 per call without
