"""The benchmark harness runs end to end on the tiny model with 2 repetitions and writes valid outputs."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_fast.dev import bench
from gr00t_fast.dev.bench.loop import LOOP_METHODS, tracking_error
from gr00t_fast.robot.base import JOINT_NAMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMON = ["--reps", "2", "--warmup", "1", "--threads", "2"]


def check_outputs(out, name, pngs):
    result = json.loads((out / f"{name}.json").read_text())
    env = result["environment"]
    assert env["torch_threads"] == 2 and env["cores"] >= 1 and env["cpu"]
    assert {"python", "torch", "numpy", "onnxruntime", "gr00t_fast"} <= set(env["versions"])
    assert set(env["cpu_flags"]) == {"amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2"}
    markdown = (out / f"{name}.md").read_text()
    assert markdown.startswith("# ") and "|---|" in markdown and "CPU flags present: " in markdown
    for png in pngs:
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    return result, markdown


def test_inference(tiny_checkpoint, tmp_path, capsys):
    argv = ["inference", "--model_path", str(tiny_checkpoint), "--backends", "torch", "--steps", "4,2",
            "--loop_chunks", "2", "--action_horizon", "8", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, markdown = check_outputs(tmp_path, "inference", ["inference.png"])
    rows = {r["name"]: r for r in result["configurations"]}
    assert list(rows) == ["Server 4-step", "Direct 4-step", "Direct 2-step"]
    for row in rows.values():
        assert row["successful_runs"] == 2 and len(row["times_ms"]) == 2 and row["first_call_ms"] > 0
        assert row["min"] <= row["median"] <= row["max"]
        assert row["closed_loop"]["steps"] == 16 and row["closed_loop"]["refills"] == 2
        assert row["precision"] == "float32"  # each row says what it ran in
    # same observation and noise: the server computes exactly the direct 4-step actions, 2 steps do not
    assert rows["Server 4-step"]["max_action_diff_vs_direct_4step"] == 0.0
    assert rows["Direct 2-step"]["max_action_diff_vs_direct_4step"] > 0.0
    console = capsys.readouterr().out
    lines = [line.split("  ")[0].strip() for line in console.splitlines()]
    metrics = ["Metric", "Mean Time", "Median Time", "Min Time", "Max Time", "Successful Runs", "Step Mean (ms)",
               "Refill Mean (ms)", "Step/Refill"]
    start = lines.index("Metric")
    assert lines[start : start + len(metrics)] == metrics
    header = console.splitlines()[start]
    assert header.split()[-1] == "Direct/Server" and "Server 4-step (float32; ms)" in header  # dtype, unit
    assert "Successful Runs" in markdown and "Step/Refill" in markdown


@pytest.mark.slow
def test_loop(tiny_checkpoint, tmp_path):
    argv = ["loop", "--model_path", str(tiny_checkpoint), "--duration", "0.3", "--fps", "10", "--delays", "0.1",
            "--camera_size", "64x48", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, markdown = check_outputs(tmp_path, "loop", ["loop_trajectories.png", "loop_errors.png",
                                                        "loop_switches.png", "loop_metrics.png"])
    runs = result["runs"]
    assert [(r["method"], r["delay_s"]) for r in runs] == [(m, d) for d in (0.1,) for m in LOOP_METHODS]
    assert "Jump mean (deg)" in markdown and "Jerk RMS" in markdown
    assert "holds random weights" in result["random_weights"] and result["random_weights"] in markdown  # the jumps'
    assert set(result["call_cost"]) == {"plain", "freeze", "guided", "guided-identity"}
    gaps = result["switch_gap"]["modes"]
    assert set(gaps) == {"plain", "freeze", "guided", "guided-identity"} and "Switch gap mean (deg)" in markdown
    assert gaps["plain"]["mean_deg"] > 0 and gaps["freeze"]["mean_deg"] == 0.0  # frozen rows are the prefix
    headings = result["heading_kept"]
    if headings["trials"]:  # a random head may never head for pose B from there
        assert set(headings["modes"]) == set(gaps) and all(0 <= m["kept"] <= 1 for m in headings["modes"].values())
    assert "Heading kept" in markdown
    assert all(c["successful_runs"] == 2 and c["median"] > 0 for c in result["call_cost"].values())
    for run in runs:
        assert run["steps"] >= 1 and run["actions_per_s"] > 0
        assert run["chunk_switches"] >= 0 and "jump_mean_deg" in run and "jerk_rms_deg_s3" in run
        # 0.3 s at 10 Hz: a loaded machine may send a single action, and a change per step needs two
        step = run["median_step_deg"]
        assert "after_switch_step_deg" in run and (step >= 0 or math.isnan(step) and run["actions_executed"] < 2)
        assert run["arm_mae_deg"] >= 0 and run["arm_rmse_deg"] >= run["arm_mae_deg"]
        assert set(run["mae"]) == set(JOINT_NAMES)


def test_scaling(tiny_checkpoint, tmp_path):
    argv = ["scaling", "--model_path", str(tiny_checkpoint), "--cameras", "1,2", "--steps", "1,2", "--batches", "1,2",
            "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path, "scaling", ["scaling.png"])
    rows = [(r["axis"], r["value"], r["cameras"], r["steps"], r["batch"]) for r in result["rows"]]
    assert rows == [("cameras", 1, 1, 4, 1), ("cameras", 2, 2, 4, 1), ("denoising_steps", 1, 1, 1, 1),
                    ("denoising_steps", 2, 1, 2, 1), ("batch", 1, 1, 4, 1), ("batch", 2, 1, 4, 2)]
    assert all(r["successful_runs"] == 2 for r in result["rows"])


def test_contention_interleaves_settings_and_loop_segments_over_rounds(tiny_checkpoint, tmp_path, capsys):
    argv = ["contention", "--model_path", str(tiny_checkpoint), "--busy", "0", "--settings", "auto,1", "--rounds", "2",
            "--reps", "3", "--warmup", "1", "--loop_duration", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "contention.json").read_text())
    rows = {r["threads"]: r for r in result["rows"]}
    assert list(rows) == ["auto", "1"] and rows["1"]["teams"] == [1]
    for row in rows.values():
        assert len(row["times_ms"]) == 3  # 2 + 1 over the rounds
        loop = row["loop"]
        assert loop["segments"] == 2 and loop["inferences"] >= 2 and loop["steps"] >= 2  # each segment's first chunk
        assert loop["inference_mean_ms"] == pytest.approx(np.mean(loop["inference_ms"]))
        assert loop["freeze_beyond_call_ms"] <= loop["longest_freeze_ms"]
        assert loop["inference_vs_alone"] == pytest.approx(loop["inference_mean_ms"] / np.mean(row["times_ms"]))
    order = [line.split("threads ")[1].split()[0] for line in capsys.readouterr().out.splitlines()
             if "busy, round" in line]
    assert order == ["auto", "1", "1", "auto"]  # drift reaches both settings alike


@pytest.mark.slow
def test_contention_compiles_an_openvino_policy_per_setting(tiny_checkpoint, tmp_path, monkeypatch):
    """OpenVINO cannot change a compiled model's team per call: each setting is its own policy with that team."""
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    argv = ["contention", "--model_path", str(tiny_checkpoint), "--backend", "openvino", "--busy", "0", "--settings",
            "1,all", "--rounds", "1", "--reps", "2", "--warmup", "1", "--loop_duration", "0", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = {r["threads"]: r for r in json.loads((tmp_path / "contention.json").read_text())["rows"]}
    assert rows["1"]["teams"] == [1] and rows["all"]["teams"] == [len(os.sched_getaffinity(0))]
    assert all(len(r["times_ms"]) == 2 for r in rows.values())


def test_freeze_beyond_call_is_the_pause_less_the_call_that_ended_it():
    from gr00t_fast.control.telemetry import StepRecord
    from gr00t_fast.dev.bench.contention import freeze_beyond_call_ms

    def step(k, hold, inference_ms=None):
        return StepRecord(step=k, t=0.1 * k, state=[], action=[], refill=False, hold=hold, inference_ms=inference_ms,
                          loop_ms=1.0, queue_depth=0)

    # a chunk without a pause (step 1), then 4 held steps ended by a 350 ms call's chunk at step 6: 500 - 350
    records = [step(0, False), step(1, False, 120.0), *[step(k, True) for k in range(2, 6)], step(6, False, 350.0),
               step(7, False)]
    assert freeze_beyond_call_ms(records) == pytest.approx(150.0)
    assert freeze_beyond_call_ms(records[:2]) == 0.0  # no pause


def test_tracking_error_is_zero_on_time_and_grows_with_lag():
    import numpy as np

    fps = 10.0
    values = np.arange(20, dtype=float)[:, None].repeat(6, 1)
    reference = (np.arange(20) / fps, values)
    on_time = (np.arange(20) / fps + 0.03, values)  # each action sent 30 ms into its period
    late = (np.arange(20) / fps + 0.13, values)  # one period late (the first action counts from the start)
    assert tracking_error(on_time, reference, fps, 1.5)["arm_mae_deg"] == 0.0
    assert tracking_error(late, reference, fps, 1.5)["arm_mae_deg"] == pytest.approx(14 / 15)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inference", "--steps", "2,1"], "--steps must include 4"),
        (["loop", "--methods", "sync,teleport"], "unknown ['teleport']"),
        (["scaling", "--cameras", "3"], "--cameras"),
        (["inference", "--model_path", "/nonexistent"], "not a checkpoint directory"),
        (["server", "--formats", "json"], "--formats"),
        (["model", "--reps", "0"], "--reps must be >= 1"),
        (["ab", "--upstream_python", "/nonexistent/python", "--upstream_src", "/tmp"], "/nonexistent/python does not exist"),
        (["ab", "--upstream_port", "5555", "--fps", "0"], "--fps be > 0"),
        (["ab", "--upstream_port", "5555", "--dtypes", "float32,float16"], "--dtypes: unknown ['float16']"),
        (["ab", "--upstream_port", "5555", "--dtypes", "bfloat16"], "--dtypes must include float32"),
        (["ab", "--upstream_port", "5555", "--dtype", "bfloat16"], "instead of --dtype"),
        (["fleet", "--servers", "serial,grpc"], "--servers"),
        (["fleet", "--servers", "serial", "--chunk_steps", "0"], "--chunk_steps >= 1"),
        (["backends", "--observations", "/nonexistent/cases.npz"], "--observations: expected example, reach or"),
        (["reach", "--precisions", "float32,fp4"], "unknown ['fp4']"),
        (["contention", "--rounds", "0"], "--rounds >= 1"),
        *[([name, "--quantize", "int8", "--calibration", "obs.npz"], f"bench {name} quantizes models of its own")
          for name in ("backends", "gpu", "inference")],
    ],
)
def test_bad_arguments(argv, message, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one line



@pytest.mark.parametrize("argv", [["ab", "--quantize", "int8"], ["reach", "--precisions", "float32,int8"]])
def test_int8_this_cpu_refuses_is_said_before_any_work(argv, tiny_checkpoint, monkeypatch, capsys):
    """A CPU whose FBGEMM is no faster than its float32 (an AMD EPYC with AVX2 only): one line, before a model loads,
    not after the float32 rows ran."""
    monkeypatch.setattr("gr00t_fast.model.quantize.int8_units", lambda: None)
    monkeypatch.setattr("gr00t_fast.model.quantize.fbgemm_rates", lambda: (74.0, 72.0))
    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: True)
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
    monkeypatch.setattr("gr00t_fast.dev.bench.ab.Upstream.find", lambda *a: None)  # NVIDIA's pipeline: never reached
    assert bench.main([*argv, "--model_path", str(tiny_checkpoint), "--device", "cpu", "--out", "/tmp/unused"]) == 2
    err = capsys.readouterr().err
    assert "--quantize int8 does not pay on this CPU" in err and err.count("\n") == 1

# oneDNN packs bf16 weights on AVX512 CPUs (or AVX-NE-CONVERT ones); an AVX2-only CPU computes bf16 unpacked
PACKABLE = torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")


@pytest.mark.slow
def test_backends(tiny_checkpoint, tmp_path, capsys, int8_at_every_size, monkeypatch):
    """Model-level rows with their action error against fp32 eager, normalized and per action key in the policy's
    units, on the demo task's swing (compile and ORT INT8 skipped: slow to build). With bf16 units the bf16 torch
    rows run packed layers, as `load_policy` would build them."""
    if PACKABLE:
        monkeypatch.setattr("gr00t_fast.model.packed.bf16_units", lambda: "AVX512-BF16")
    argv = ["backends", "--model_path", str(tiny_checkpoint), "--skip", "compile,onnxruntime int8", "--observations",
            "reach", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, markdown = check_outputs(tmp_path, "backends", [])
    rows = {r["backend"]: r for r in result["results"]}
    openvino = {"openvino f32", "openvino bf16", "openvino f32 + int8 weights", "openvino bf16 + int8 weights"}
    assert set(rows) == {"torch float32 eager", "torch bfloat16 eager", "onnxruntime fp32", "torch int8 (onednn)",
                         "torch bfloat16 + int8 (onednn)", "torch fp8 (_scaled_mm)", *openvino}
    assert rows["openvino f32"]["max_abs_diff"] < 1e-4  # OpenVINO's f32 graphs: rounding only
    assert all(rows[name]["mean_abs_diff"] < 0.2 for name in openvino)  # bf16: f32 where the CPU has no bf16 units
    assert rows["openvino f32 + int8 weights"]["mean_abs_diff"] > 0
    assert result["error_inputs"] == ["swing 0.00", "swing 0.25", "swing 0.50", "swing 0.75", "swing 1.00"]
    assert rows["torch float32 eager"]["max_abs_diff"] == 0.0 and rows["onnxruntime fp32"]["max_abs_diff"] < 1e-4
    assert rows["torch float32 eager"]["max_abs_diff_by_key"] == {"action.single_arm": 0.0, "action.gripper": 0.0}
    for name in ("torch bfloat16 eager", "torch int8 (onednn)", "torch bfloat16 + int8 (onednn)"):
        row = rows[name]
        assert 0 < row["mean_abs_diff"] < 0.2, name
        assert all(0 < v < 90 for v in row["max_abs_diff_by_key"].values()), (name, row["max_abs_diff_by_key"])
    assert all(r["successful_runs"] == 2 for r in rows.values())
    assert "Max Δ single_arm" in markdown and "Max Δ gripper" in markdown and "Quantized (--quantize)" in markdown
    # each row says what --quantize converted in the network it ran (nothing in the unquantized and exported ones)
    unquantized = ("torch float32 eager", "torch bfloat16 eager", "onnxruntime fp32", *openvino)
    assert {rows[name]["quantized"] for name in unquantized} == {""}
    for name, mode in [("torch int8 (onednn)", "int8"), ("torch bfloat16 + int8 (onednn)", "int8"),
                       ("torch fp8 (_scaled_mm)", "fp8")]:
        assert rows[name]["quantized"].startswith(f"{mode} matmuls in "), rows[name]["quantized"]
    assert not rows["torch int8 (onednn)"]["quantized"].startswith("int8 matmuls in 0 of"), "int8_at_every_size"
    assert {name: row["packed_layers"] > 0 for name, row in rows.items()} == {
        "torch float32 eager": False, "torch bfloat16 eager": PACKABLE, "onnxruntime fp32": False,
        "torch int8 (onednn)": False, "torch bfloat16 + int8 (onednn)": PACKABLE, "torch fp8 (_scaled_mm)": False,
        **{name: False for name in openvino}}
    assert "| Packed layers |" in markdown


def test_backends_of_a_packed_policy(tiny_checkpoint, tmp_path, monkeypatch):
    """A bf16 policy has its own torch row (before, the bf16 row of a float32 policy replaced it), and that row keeps
    its packed layers while ONNX exports plain ones (a second load: before, the export unpacked the one shared model)."""
    if not PACKABLE:
        pytest.skip("oneDNN packs bf16 weights on AVX512 (or AVX-NE-CONVERT) CPUs; this one has AVX2 only")
    if PACKABLE:
        monkeypatch.setattr("gr00t_fast.model.packed.bf16_units", lambda: "AVX512-BF16")
    argv = ["backends", "--model_path", str(tiny_checkpoint), "--dtype", "bfloat16", "--skip",
            "compile,onnxruntime int8,int8,fp8,openvino", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    rows = {r["backend"]: r for r in check_outputs(tmp_path, "backends", [])[0]["results"]}
    assert {name: row["packed_layers"] for name, row in rows.items()} == {
        "torch bfloat16 eager": 44, "onnxruntime fp32": 0}
    assert all(row["successful_runs"] == 2 for row in rows.values())


def test_a_packed_policys_flops_are_its_plain_ones(tiny_checkpoint):
    """`bench ab`'s GFLOP a call counts a packed layer's op as the matmul it is (FlopCounterMode does not know it):
    float32 packed, as an AMD CPU with AVX2 only runs it."""
    from gr00t_fast.dev.bench.common import bench_noise, bench_observation, call_flops
    from gr00t_fast.loading import load_policy
    from gr00t_fast.model.packed import pack_linears

    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", warmup=False)
    observation, noise = bench_observation(policy), bench_noise(policy)
    policy.get_action(observation, noise=noise)  # the action head's step tables, computed once: in neither count
    plain = call_flops(policy, observation, noise)
    assert pack_linears(policy.model) and call_flops(policy, observation, noise) == plain > 0


def test_backends_on_nvidias_reference_cases(golden_checkpoint, tmp_path):
    """On NVIDIA's tiny checkpoint and its own observations and noise (the so100 cases of cases.npz), bf16 moves the
    decoded actions by a finite, non-zero amount per key; fp32 against itself by nothing."""
    cases = golden_checkpoint.parent / "cases.npz"
    argv = ["backends", "--model_path", str(golden_checkpoint), "--observations", str(cases), "--skip",
            "compile,onnxruntime,int8,fp8,openvino", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path, "backends", [])
    assert result["error_inputs"] == ["so100_steps4", "so100_steps2_instr2", "so100_batch2_samelen"]
    fp32, bf16 = result["results"]
    assert (fp32["backend"], bf16["backend"]) == ("torch float32 eager", "torch bfloat16 eager")
    assert set(fp32["max_abs_diff_by_key"].values()) == {0.0}
    assert bf16["max_abs_diff_by_key"].keys() == {"action.single_arm", "action.gripper"}
    assert all(0 < v < 20 for v in bf16["max_abs_diff_by_key"].values()), bf16["max_abs_diff_by_key"]
    assert bf16["error_cases"]["so100_batch2_samelen"]["max_abs_diff"] > 0


def test_backends_on_your_own_observations(tiny_checkpoint, tmp_path):
    """`--observations FILE.npz` of one batched observation (what `export int8 --calibration` takes): the error is
    measured on its samples, each through the policy's processor; fp32 against itself moves nothing, bf16 something.
    A file that is neither that nor NVIDIA's cases is one line."""
    from gr00t_fast.dev.demo_task import sim_swing_observations

    own = tmp_path / "observations.npz"
    np.savez(own, **sim_swing_observations(3, size=(64, 48)))
    argv = ["backends", "--model_path", str(tiny_checkpoint), "--observations", str(own), "--skip",
            "compile,onnxruntime,int8,fp8,openvino", "--out", str(tmp_path / "out"), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path / "out", "backends", [])
    assert result["error_inputs"] == ["sample 0", "sample 1", "sample 2"]
    fp32, bf16 = result["results"]
    assert set(fp32["max_abs_diff_by_key"].values()) == {0.0} and bf16["max_abs_diff"] > 0
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert bench.main([*argv[:4], str(tmp_path / "bad.npz"), *argv[5:]]) == 2


def test_reach_per_precision(tiny_checkpoint, tmp_path, monkeypatch, int8_at_every_size):
    """The closed loop per precision: the same sync run in each, so float32 against itself deviates by nothing and
    bfloat16 / int8 (a silently fp32 path would not) by something. Without --model_path it runs the cached demo
    checkpoint of --size tiny (here a random-weight stand-in already in the cache: no fit)."""
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    shutil.copytree(tiny_checkpoint, tmp_path / "cache" / "reach_tiny")
    argv = ["reach", "--precisions", "float32,bfloat16,int8", "--max_steps", "8", "--camera_size", "32x24",
            "--out", str(tmp_path / "out"), *COMMON]
    assert bench.main(argv) == 0
    result, markdown = check_outputs(tmp_path / "out", "reach", [])
    assert result["checkpoint"] == str(tmp_path / "cache" / "reach_tiny")
    outcome = result["precisions"]
    assert list(outcome) == ["float32", "bfloat16", "int8"]
    for name, o in outcome.items():
        assert o["steps"] == 8 and o["held"] == 0 and len(o["poses"]) == 2, name
        assert all(0 <= p["closest_arm_deg"] < 360 and 0 <= p["closest_step"] < 8 for p in o["poses"]), name
    assert outcome["float32"]["max_arm_deviation_deg"] == 0.0
    assert outcome["bfloat16"]["max_arm_deviation_deg"] > 0 and outcome["int8"]["max_arm_deviation_deg"] > 0
    assert outcome["float32"]["ran_as"] == "float32"
    assert outcome["bfloat16"]["ran_as"] in ("bfloat16", "bfloat16, oneDNN-packed weights in 44 layers")  # bf16 units
    assert outcome["int8"]["ran_as"].startswith("float32, int8 matmuls in "), outcome["int8"]["ran_as"]
    assert "Closest to A / B (deg)" in markdown and "Turns toward A / B" in markdown


def test_server(tiny_checkpoint, tmp_path):
    argv = ["server", "--model_path", str(tiny_checkpoint), "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path, "server", [])
    for row in result["rows"]:
        assert row["round_trip_ms"] > 0 and row["codec_ms"] > 0 and row["request_kb"] > 900  # one 640x480 frame
    assert [r["format"] for r in result["rows"]] == ["msgpack", "legacy"]


def test_model(tiny_checkpoint, tmp_path):
    argv = ["model", "--model_path", str(tiny_checkpoint), "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path, "model", [])
    assert result["load"]["weights_mb"] > 0 and result["load"]["peak_rss_mb"] >= result["load"]["rss_before_mb"]
    assert result["load"]["load_s"] > 0 and result["cold_call_ms"] > 0
    assert result["load"]["precision"]["requested"] == result["precision"]["requested"] == "auto"
    assert set(result["median_ms"]) >= {"backbone (vision + LLM)", "whole call, 4 steps"}


def test_gpu_on_cpu(tmp_path, monkeypatch, capsys):
    """`bench gpu --device cpu --size tiny`: the random checkpoint is generated, every row is measured or reports why
    it failed (cuda-graph needs a GPU), and gpu.json holds cold call, median / p90 and the action error."""
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    argv = ["gpu", "--device", "cpu", "--size", "tiny", "--skip", "compile", "--out", str(tmp_path / "out"), *COMMON]
    assert bench.main(argv) == 0
    assert (tmp_path / "cache" / "bench_tiny" / "config.json").is_file()
    result, markdown = check_outputs(tmp_path / "out", "gpu", [])
    rows = {r["row"]: r for r in result["results"]}
    assert list(rows) == ["torch fp32", "torch bf16", "cuda-graph bf16", "bf16 + fp8", "bf16 + int8"]
    assert "needs a CUDA GPU" in rows["cuda-graph bf16"]["error"] and "cuda-graph bf16 | failed" in markdown
    assert rows["torch fp32"]["max_abs_diff"] == 0.0 and result["timer"] == "host clock"
    for name in ("torch bf16", "bf16 + fp8", "bf16 + int8"):
        assert 0 < rows[name]["mean_abs_diff"] <= rows[name]["max_abs_diff"] < 1.0, name
    for row in rows.values():
        if "error" not in row:
            assert len(row["times_ms"]) == 2 and row["cold_call_ms"] > 0 and row["p90"] >= row["median"] > 0
    assert rows["bf16 + int8"]["backend"] == "torch" and rows["bf16 + fp8"]["quantize"] == "fp8"


def test_fleet_serial_rows(tiny_checkpoint, tmp_path):
    """The serial rows of `bench fleet` (the fleet rows need PyTriton: tests/fleet runs them)."""
    argv = ["fleet", "--model_path", str(tiny_checkpoint), "--servers", "serial", "--robots", "1,2", "--duration",
            "1", "--out", str(tmp_path), *COMMON]
    assert bench.main(argv) == 0
    result, _ = check_outputs(tmp_path, "fleet", ["fleet.png"])
    assert [(r["server"], r["robots"]) for r in result["results"]] == [("serial", 1), ("serial", 2)]
    for row in result["results"]:
        assert row["requests"] > 0 and row["failures"] == 0 and 0 <= row["empty_queue_share"] <= 1
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_s"] > 0


def test_steps_after_switches_sees_a_dip_one_step_after_an_exact_switch():
    from gr00t_fast.control.telemetry import StepRecord
    from gr00t_fast.dev.bench.loop import steps_after_switches

    targets = [0, 3, 6, 9, 30, 12, 15, 18, 21]  # a chunk switch at step 3 (exact), a 21-degree dip one step later
    records = [StepRecord(step=k, t=k / 5, state=[], action=[v] * 6, refill=False, hold=False, inference_ms=None,
                          loop_ms=1.0, queue_depth=1, chunk_jump_deg=0.0 if k == 3 else None)
               for k, v in enumerate(targets)]
    result = steps_after_switches(records)
    assert result == {"after_switch_step_deg": 21.0, "median_step_deg": 3.0}


def test_a_benchmarks_own_defaults_stay_its_own():
    """gpu defaults to --size full --reps 50 and reach to --size tiny; the others keep small and 20."""
    from gr00t_fast.dev.bench.cli import build_parser

    parser = build_parser()
    defaults = {name: (parser.parse_args([name]).size, parser.parse_args([name]).reps)
                for name in ("backends", "inference", "reach", "gpu")}
    assert defaults == {"backends": ("small", 20), "inference": ("small", 20), "reach": ("tiny", 20),
                        "gpu": ("full", 50)}


def test_the_benchmarks_own_server_waits_as_long_as_its_clients(tiny_checkpoint):
    """A full-size call of an AVX2-only CPU took 17 s: the server a benchmark starts must take a request of its
    clients (`SERVER_TIMEOUT_MS`) after such a call, not refuse it at the serve command's 15 s default."""
    from gr00t_fast import load_policy
    from gr00t_fast.dev.bench.common import SERVER_TIMEOUT_MS, local_server

    server = local_server(load_policy(tiny_checkpoint, device="cpu", warmup=False))
    try:
        server.admission.served(17.0)
        server.admission.check(running=0, budget_s=server.admission.budget_s(SERVER_TIMEOUT_MS))
    finally:
        server.close()


def test_ab_against_the_server_you_run(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Terminal 1 runs a policy server on the checkpoint (here gr00t-fast's, which speaks inference_service.py's
    protocol; tests/upstream runs NVIDIA's own), terminal 2 `bench ab --upstream_port`: the side-by-side table, with
    nothing of NVIDIA's in-process pipeline configured."""
    from gr00t_fast import load_policy
    from gr00t_fast.dev.bench.common import local_server

    for name in ("GR00T_UPSTREAM_PYTHON", "GR00T_UPSTREAM_SRC"):
        monkeypatch.delenv(name, raising=False)
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    with local_server(policy).in_thread() as server:
        argv = ["ab", "--model_path", str(tiny_checkpoint), "--upstream_port", str(server.port), "--dtypes",
                "float32,bfloat16", "--out", str(tmp_path), *COMMON]
        assert bench.main(argv) == 0, capsys.readouterr().err
    result, markdown = check_outputs(tmp_path, "ab", ["ab.png"])
    rows = {r["name"]: r for r in result["configurations"]}
    assert list(rows) == ["NVIDIA server fp32", "gr00t-fast torch 4-step fp32", "gr00t-fast server fp32",
                          "gr00t-fast torch 4-step bf16"]
    assert set(rows["gr00t-fast torch 4-step bf16"]["ratio"]) == {"NVIDIA server fp32"}
    assert "NVIDIA server fp32" in markdown
    # how close to the hardware: the call's FLOPs over its time, beside a large matmul in the same precision
    assert result["flops_per_call"] > 1e8 and set(result["matmul_probe"]["gflops"]) == {"float32", "bfloat16"}
    for name, row in rows.items():
        if name == "NVIDIA server fp32":  # the server the user runs: its checkpoint and steps are its own
            assert row["gflops"] is None and row["of_matmul_probe"] is None
            continue
        assert row["gflops"] == pytest.approx(result["flops_per_call"] / row["median"] / 1e6)
        assert row["of_matmul_probe"] == pytest.approx(row["gflops"] / result["matmul_probe"]["gflops"][row["dtype"]])
    assert "320x2048x2048 matmul GFLOP/s, same precision" in markdown and "GFLOP per call" in markdown


def test_ab_against_a_port_where_nothing_answers_is_one_line(tiny_checkpoint, capsys):
    from gr00t_fast.serve.triton import free_port

    port = free_port()
    assert bench.main(["ab", "--model_path", str(tiny_checkpoint), "--upstream_port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gr00t-fast bench: error: --upstream_host/--upstream_port 127.0.0.1:{port}: no policy server "
                   f"answered within 5 s: start NVIDIA's scripts/inference_service.py --server --port {port} (or "
                   "gr00t-fast serve) there first"), err


def test_an_isaac_checkout_alone_runs_with_this_python(tmp_path, monkeypatch):
    import sys

    from gr00t_fast.dev.upstream import Upstream

    for name in ("GR00T_UPSTREAM_PYTHON", "GR00T_UPSTREAM_SRC"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "gr00t" / "model").mkdir(parents=True)
    (tmp_path / "gr00t" / "model" / "policy.py").write_text("")
    assert Upstream.find(src=str(tmp_path)) == Upstream(Path(sys.executable), tmp_path)
    with pytest.raises(ValueError, match="give --upstream_src"):
        Upstream.find()


def test_ab_when_nvidias_side_exits_is_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """An Isaac-GR00T checkout NVIDIA's pipeline cannot import (here only a broken `gr00t.model.policy`): its
    process exits, and bench ab says so in one line with the exception its log ends with and where that log is."""
    for name in ("GR00T_UPSTREAM_PYTHON", "GR00T_UPSTREAM_SRC"):
        monkeypatch.delenv(name, raising=False)
    src = tmp_path / "isaac"
    (src / "gr00t" / "model").mkdir(parents=True)
    (src / "gr00t" / "model" / "policy.py").write_text("raise ImportError('this checkout is broken')\n")
    argv = ["ab", "--model_path", str(tiny_checkpoint), "--upstream_src", str(src), "--dtypes", "float32",
            "--out", str(tmp_path / "out"), *COMMON]
    assert bench.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("gr00t-fast bench ab: error: NVIDIA's Gr00tPolicy process exited: ModuleNotFoundError: "
                          "No module named 'gr00t.") and "(its log: " in err, err
