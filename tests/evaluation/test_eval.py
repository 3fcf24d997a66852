"""`gr00t-fast eval` end to end on a LeRobot v2.1 dataset (tests/recorded.py) with the tiny checkpoint: NVIDIA's
semantics (a chunk every action_horizon steps, recorded actions as ground truth, its MSE), batching that changes no
action, the outputs, `--compare`, a served policy, and one line for every bad flag or mismatched dataset. NVIDIA's
own loop is compared in tests/upstream, LeRobot v3.0 datasets in tests/real_lerobot."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_fast.data import open_dataset
from gr00t_fast.evaluation import evaluate, overall_metrics
from gr00t_fast.evaluation import cli as eval_cli
from gr00t_fast.evaluation.cli import main, typed_command
from gr00t_fast.loading import load_policy
from gr00t_fast.runtime import cpuinfo
from gr00t_fast.dev.recorded import trajectory, write_v21

from fakes import ZeroPolicy


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> Path:
    return write_v21(tmp_path_factory.mktemp("data") / "so100", lengths=(40, 23, 33), size=(96, 128))


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", dtype="float32", warmup=False)


def test_ground_truth_and_mse_are_nvidias(dataset_path):
    """A chunk every 16 steps; the recorded actions of the steps each covers are the ground truth (the last chunk cut
    at `steps`); NVIDIA's MSE is the mean squared difference, averaged over episodes."""
    dataset = open_dataset(dataset_path)
    runs = evaluate(ZeroPolicy(), dataset, [0, 1, 2], steps=None, progress=False)
    for run, length in zip(runs, (40, 23, 33)):
        _, actions = trajectory(length, run.episode)
        np.testing.assert_array_equal(run.gt, actions.astype(np.float64))
        assert run.points == list(range(0, length, 16)) and run.pred.shape == run.gt.shape
    overall = overall_metrics(runs, 16, dataset.names("action.single_arm") + dataset.names("action.gripper"))
    assert overall["mse"] == pytest.approx(np.mean([np.mean(r.gt ** 2) for r in runs]))
    assert overall["joints"]["gripper.pos"]["max_abs"] == pytest.approx(max(np.abs(r.gt[:, 5]).max() for r in runs))
    assert len(overall["mae_by_position"]) == 16 and overall["steps"] == 96


class CallSizes:
    """A policy's calls, each noted by its number of observations."""

    def __init__(self, policy):
        self.policy, self.sizes = policy, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def get_action(self, observation, **options):
        self.sizes.append(len(observation["annotation.human.task_description"]))
        return self.policy.get_action(observation, **options)


def test_batching_changes_no_action_and_fills_each_call_across_episodes_and_steps(dataset_path, policy):
    """Episodes 0 and 2 share an instruction (3 + 3 inference points in 40 and 33 steps), episode 1 has its own (2
    points): a batch of 4 takes 4 of the first six observations, whatever their episode and step, then the other 2,
    then episode 1's 2. The actions are their single calls'."""
    dataset = open_dataset(dataset_path)
    one, four = CallSizes(policy), CallSizes(policy)
    singles = evaluate(one, dataset, [0, 1, 2], batch=1, progress=False)
    batched = evaluate(four, dataset, [0, 1, 2], batch=4, progress=False)
    assert one.sizes == [1] * 8 and four.sizes == [4, 2, 2]
    for a, b in zip(singles, batched):
        np.testing.assert_allclose(a.pred, b.pred, rtol=0, atol=1e-4)
        assert np.abs(a.pred).max() > 0 and len(b.ms_per_observation) == len(b.points)


class NoiseEcho:
    """A policy that answers its initial noise (the first 6 of its columns) and takes 10 ms of `clock` per
    observation."""

    action_horizon, noise_shape = 16, (16, 32)

    def __init__(self):
        self.clock = 0.0

    def get_action(self, observation, *, noise, denoising_steps=None):
        self.clock += 0.010 * len(noise)
        return {"action.single_arm": noise[:, :, :5], "action.gripper": noise[:, :, 5:6]}


def test_each_observation_gets_its_own_episodes_and_steps_noise_and_its_share_of_the_calls_time(dataset_path,
                                                                                                 monkeypatch):
    """Batched two at a time (two read groups, [0, 1] and [2]), each chunk starts from the noise of its episode and
    inference point (`--noise_seed`'s draws, whichever call it was in) and counts its share of its call's time."""
    from gr00t_fast.evaluation import open_loop

    policy = NoiseEcho()
    monkeypatch.setattr(open_loop.time, "perf_counter", lambda: policy.clock)
    runs = evaluate(policy, open_dataset(dataset_path), [0, 1, 2], batch=2, noise_seed=5, progress=False)
    for run, length in zip(runs, (40, 23, 33)):
        noise = [np.random.default_rng([5, run.episode, point]).standard_normal((16, 32))[:, :6]
                 for point in run.points]
        np.testing.assert_allclose(run.pred, np.concatenate(noise)[:length], rtol=0, atol=1e-6)
        assert run.ms_per_observation == pytest.approx([10.0] * len(run.points))


def test_eval_end_to_end_writes_its_outputs(dataset_path, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    # the machine the file records is `cpu_record`'s (tests/runtime/test_cpuinfo.py reads /proc/cpuinfo's text)
    avx2 = {"cpu": "AMD EPYC 7B13", "cpu_flags": {flag: flag == "avx2" for flag in cpuinfo.CPU_FLAGS}}
    monkeypatch.setattr(eval_cli, "cpu_record", lambda: avx2)
    argv = ["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "0", "2",
            "--out", str(out / "results.json"), "--save_arrays", str(out / "arrays.npz"),
            "--plot", str(out / "plots"), "--dtype", "float32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "MSE (NVIDIA)" in printed and "shoulder_pan.pos" in printed and "not success rates" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == [0, 2] and results["version"] == "v2.1"
    assert shlex.split(results["command"]) == ["gr00t-fast", "eval", *argv]
    machine = results["environment"]  # what the benchmarks page reads
    assert machine["cpu"] == avx2["cpu"] and machine["cpu_flags"] == avx2["cpu_flags"]
    assert machine["threads_asked"] is None  # not asked for: auto
    assert set(machine["load_average"]) == {"before", "after"}
    loaded = results["loaded_as"]["policy"]  # how the policy ran, as its load line said it
    assert loaded.startswith("cpu, float32") and "thread" in loaded
    assert [m["steps"] for m in results["per_episode"]] == [40, 33]
    arrays = np.load(out / "arrays.npz")
    assert arrays["gt/0"].shape == arrays["pred/0"].shape == (40, 6) and arrays["state/2"].shape == (33, 6)
    assert results["overall"]["mse"] == pytest.approx(np.mean([np.mean((arrays[f"gt/{e}"] - arrays[f"pred/{e}"]) ** 2)
                                                               for e in (0, 2)]))
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["episode_0.png", "episode_2.png"]


def test_the_command_recorded_hides_the_api_token():
    assert typed_command(["--policy_host", "h", "--api_token", "s3cret", "--api-token=s3cret", "--out", "r.json"]) \
        == "gr00t-fast eval --policy_host h --api_token '***' '--api-token=***' --out r.json"


def test_compare_runs_every_path_on_the_same_noise(dataset_path, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "1",
                 "--compare", "default", "onnxruntime", "steps1", "--out", str(out)]) == 0
    rows = {row["path"]: row for row in json.loads(out.read_text())["compare"]}
    assert list(rows) == ["reference", "default", "onnxruntime", "steps1"]
    assert rows["reference"]["max_deviation_from_reference"] == 0
    assert rows["default"]["max_deviation_from_reference"] == 0  # the tiny checkpoint's default is float32
    assert 0 < rows["onnxruntime"]["max_deviation_from_reference"] < 0.05  # degrees: the graphs' rounding
    assert rows["steps1"]["max_deviation_from_reference"] > 1  # one step is another sampler
    loaded = {path: row["loaded_as"] for path, row in rows.items()}
    assert loaded["reference"].startswith("cpu, float32") and "thread" in loaded["reference"]
    assert loaded["onnxruntime"].startswith("cpu, onnxruntime, ")  # its graphs' precision, not the host model's
    assert "max |dev. from reference|" in capsys.readouterr().out


def test_an_evaluation_alone_pays_no_warm_up_and_compare_warms_every_path(dataset_path, tiny_checkpoint, monkeypatch,
                                                                         capsys):
    """Alone, `eval` times nothing: its first call pays the lazy initialisation (no warm-up calls, ~0.3 s of the
    command at 48M). `--compare` reports each path's ms/obs: each is warmed up before its first timed call, a batch
    too (the int8 blocks compile once more for their first batch)."""
    from gr00t_fast.policy.policy import Gr00tPolicy

    warmed = []
    monkeypatch.setattr(Gr00tPolicy, "warmup", lambda self, iterations=3, batch=False: warmed.append(batch))
    args = ["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "1", "--steps",
            "5"]
    assert main(args) == 0 and warmed == []
    assert main([*args, "--compare", "default", "steps1"]) == 0 and warmed == [True] * 3
    warmed.clear()
    assert main([*args, "--compare", "default", "--batch", "1"]) == 0 and warmed == [False] * 2  # no batch to compile
    assert "ms/obs" in capsys.readouterr().out


def test_compare_calibrates_the_paths_that_quantize_alone(dataset_path, tiny_checkpoint, tmp_path, capsys):
    """`--quantize int8 --calibration`: `default` and `int8` measure their activations on the observations, the
    reference (float32, no quantization) loads without them (it would be refused with them)."""
    rng, calibration = np.random.default_rng(0), tmp_path / "obs.npz"
    np.savez(calibration, **{"video.webcam": rng.integers(0, 256, (3, 1, 480, 640, 3), dtype=np.uint8),
                             "state.single_arm": rng.uniform(-50, 50, (3, 1, 5)),
                             "state.gripper": rng.uniform(0, 50, (3, 1, 1)),
                             "annotation.human.task_description": np.array(["pick"] * 3)})
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "1",
                 "--steps", "5", "--quantize", "int8", "--calibration", str(calibration),
                 "--compare", "default", "int8"]) == 0
    assert capsys.readouterr().out.count("activations measured on 3 of your observations") == 2


@pytest.mark.slow
def test_a_served_policy_is_evaluated_through_the_client(dataset_path, tiny_checkpoint, tmp_path, capsys):
    from gr00t_fast.dev.served import serve

    with serve(tiny_checkpoint, tmp_path / "serve.log", "--dtype", "float32", api_token="s3cret") as served:
        assert main(["--policy_host", "127.0.0.1", "--policy_port", str(served.port), "--api_token", "s3cret",
                     "--dataset_path", str(dataset_path), "--episodes", "1", "--steps", "20",
                     "--out", str(tmp_path / "r.json")]) == 0
        assert served.stop() == 0
    written = (tmp_path / "r.json").read_text()
    results = json.loads(written)
    assert results["per_episode"][0]["steps"] == 20 and np.isfinite(results["overall"]["mse"])
    assert "s3cret" not in written
    assert "client_environment" in results and "environment" not in results  # the times are the server's
    assert results["loaded_as"] == {}  # the server loaded it: this process knows no load line


def changed(dataset_path: Path, tmp_path: Path, info=None, modality=None) -> Path:
    root = shutil.copytree(dataset_path, tmp_path / "changed")
    for name, edit in (("info.json", info), ("modality.json", modality)):
        if edit is not None:
            data = json.loads((root / "meta" / name).read_text())
            edit(data)
            (root / "meta" / name).write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("flags, words", [
    (["--episodes", "5"], "no episode 5 (it has 3: 0-2)"),
    (["--steps", "30"], "episode 1 has 23 steps, --steps 30 asks for more"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--batch", "33"], "--batch 33: a policy call takes at most 32 observations"),
    (["--compare", "fp4"], "--compare: unknown path 'fp4'"),
    (["--modality_keys", "left_arm"], "--modality_keys ['left_arm'] are not actions of data config 'so100'"),
    (["--camera_map", "[1, 2"], "--camera_map '[1, 2' must map camera names to video keys"),
    (["--camera_map", "[front]"], "--camera_map '[front]' must map camera names to video keys"),
    (["--action_horizon", "32"], "--action_horizon 32 exceeds the policy's chunk of 16"),
    (["--out", "/proc/nope/r.json"], "--out: cannot write /proc/nope/r.json"),
    (["--quantize", "int8", "--calibration", "/nope/obs.npz"], "--calibration /nope/obs.npz"),  # (no .npz there)
    (["--quantize", "fp8", "--calibration", "obs.npz"], "got --backend torch --quantize fp8"),
])
def test_bad_flags_are_one_line(flags, words, dataset_path, tiny_checkpoint, capsys):
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gr00t-fast eval: error:") and words in err and "\n" not in err, err


def test_an_int8_path_this_cpu_refuses_is_said_before_the_first_path_runs(dataset_path, tiny_checkpoint, monkeypatch,
                                                                         capsys):
    """`--compare reference,int8` on a CPU whose FBGEMM is no faster than its float32: one line, before `reference`
    loads, not after it ran."""
    monkeypatch.setattr("gr00t_fast.model.quantize.int8_units", lambda: None)
    monkeypatch.setattr("gr00t_fast.model.quantize.fbgemm_rates", lambda: (74.0, 72.0))
    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: True)
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--device", "cpu",
                 "--compare", "reference", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--quantize int8 does not pay on this CPU" in err and "\n" not in err, err


def test_policy_flags_are_checked_before_the_dataset_is_read(tiny_checkpoint, capsys):
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", "/nope/dataset", "--quantize", "int8",
                 "--calibration", "/nope/obs.npz"]) == 2
    assert "--calibration /nope/obs.npz" in capsys.readouterr().err


@pytest.mark.parametrize("info, modality, words", [
    (lambda i: i.update(fps=15), None, "recorded at 15 fps, the checkpoint was trained at 30 fps (video.webcam)"),
    (None, lambda m: m["state"]["single_arm"].update(end=4), "state.single_arm has 4 values, the checkpoint's "
                                                            "statistics have 5"),
])
def test_a_dataset_that_does_not_match_the_checkpoint_is_one_line(info, modality, words, dataset_path,
                                                                  tiny_checkpoint, tmp_path, capsys):
    root = changed(dataset_path, tmp_path, info, modality)
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err, err


def test_eval_runs_nvidias_gr1_config_on_its_demo_layout(tiny_checkpoint, tmp_path, capsys):
    """`--data_config fourier_gr1_arms_only --embodiment_tag gr1` on NVIDIA's GR1 demo layout (v2.0, 44 values, the
    task in annotation columns): only the arms and hands are read and predicted, each joint's error reported."""
    from embodiment_cases import embodiment_checkpoint
    from gr00t_fast.dev.recorded import RECIPES

    checkpoint, tag = embodiment_checkpoint(tiny_checkpoint, tmp_path / "gr1", "fourier_gr1_arms_only")
    root = write_v21(tmp_path / "robot_sim.PickNPlace", lengths=(20,), fps=20, size=(64, 64),
                     recipe=RECIPES["fourier_gr1_arms_only"])
    assert main(["--model_path", str(checkpoint), "--dataset_path", str(root), "--data_config",
                 "fourier_gr1_arms_only", "--embodiment_tag", tag, "--out", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    out = capsys.readouterr().out
    assert "left_arm_0" in out and "right_hand_5" in out and "leg" not in out and "waist" not in out
    assert json.dumps(result).count("left_hand") >= 6


def test_episodes_take_commas_noise_seed_refuses_a_server_and_debug_shows_the_traceback(dataset_path,
                                                                                        tiny_checkpoint, capsys,
                                                                                        monkeypatch):
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "0,2",
                 "--steps", "16"]) == 0
    assert "episode" in capsys.readouterr().out
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "0;1"]) == 2
    assert "--episodes takes episode indices, e.g. --episodes 0 1 2 or --episodes 0,1,2" in capsys.readouterr().err
    assert main(["--policy_host", "127.0.0.1", "--dataset_path", str(dataset_path), "--noise_seed", "3"]) == 2
    assert "a server draws its own" in capsys.readouterr().err
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "no episode 9" in err
    monkeypatch.setenv("GR00T_FAST_DEBUG", "1")
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.rstrip().splitlines()[-1].startswith("gr00t-fast eval: error: ")


def test_compare_runs_tensorrt_one_observation_a_call(dataset_path, tiny_checkpoint, monkeypatch):
    """The TensorRT engines `--compare tensorrt` builds take a batch of one: its calls hold one observation each, the
    other paths' up to `--batch`."""
    from gr00t_fast.evaluation import cli

    sizes, batch_warmed = {}, {}

    def load(args, options, warmup, warmup_batch):
        policy = CallSizes(ZeroPolicy())
        sizes[options["backend"]], batch_warmed[options["backend"]] = policy.sizes, warmup_batch
        return policy, "a stand-in"  # no device, no precision: no load line

    monkeypatch.setattr(cli, "require", lambda *names: None)  # TensorRT's extra, as on a machine that has it
    monkeypatch.setattr(cli, "load", load)
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "0", "2",
                 "--compare", "tensorrt"]) == 0
    assert set(sizes["tensorrt"]) == {1} and sizes["torch"] == [6]  # 3 + 3 inference points, one instruction
    assert batch_warmed == {"torch": True, "tensorrt": False}


def test_compare_checks_every_paths_extra_before_the_first_runs(dataset_path, tiny_checkpoint, capsys, monkeypatch):
    """A missing extra of the last path is one line before anything loads (before, two paths ran first)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else find_spec(name, *a))
    loaded = []
    monkeypatch.setattr("gr00t_fast.evaluation.cli.load", lambda *a, **k: loaded.append(a) or pytest.fail("loaded"))
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--compare", "default",
                 "steps2", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "--compare openvino" in err and "openvino" in err and err.count("\n") == 1 and not loaded


def test_eval_reads_the_first_episodes_while_the_policy_loads(dataset_path, tiny_checkpoint, monkeypatch, capsys):
    """`gr00t-fast eval` starts decoding the episodes before it asks for the policy (`ReadAhead`): the first group's
    read is under way (here: done) by the time the load starts, and evaluate uses that very read."""
    import threading

    from gr00t_fast.evaluation import cli, open_loop

    read, loads = threading.Event(), []
    monkeypatch.setattr(open_loop, "_load", lambda *a, _load=open_loop._load: (read.set(), _load(*a))[1])

    def load(args, options, warmup):
        loads.append(read.wait(timeout=20))  # the read started before the load: it finishes while the load waits
        return ZeroPolicy(), "a stand-in"

    monkeypatch.setattr(cli, "load", load)
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(dataset_path), "--episodes", "0", "2",
                 "--dtype", "float32"]) == 0
    assert loads == [True] and "MSE (NVIDIA)" in capsys.readouterr().out
