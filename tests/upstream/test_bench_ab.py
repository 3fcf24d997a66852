"""`gr00t-fast bench ab` end to end against NVIDIA's real pipeline (its Gr00tPolicy processes in float32 and
bfloat16 and its inference_service.py server) on a make-checkpoint output, 2 repetitions; skipped where NVIDIA's
environment is not built (GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC). Checks what the benchmark reports, never
durations."""

import json
import math

import pytest

from gr00t_fast.dev import bench
from gr00t_fast.dev.upstream import Upstream

try:
    Upstream.find()
except ValueError as e:
    pytest.skip(f"NVIDIA's pipeline is not available: {e}", allow_module_level=True)

NV32, NV16, NVS = "NVIDIA in-process fp32", "NVIDIA in-process bf16", "NVIDIA server fp32"
FAST32, FAST16, FAST_INT8 = "gr00t-fast torch 4-step fp32", "gr00t-fast torch 4-step bf16", "gr00t-fast torch 4-step fp32 int8"
COMMON = ["--action_horizon", "8", "--loop_chunks", "2", "--bootstrap", "200", "--reps", "2", "--warmup", "1",
          "--threads", "2"]


def run_ab(tmp_path, *argv):
    assert bench.main(["ab", *argv, *COMMON, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "ab.json").read_text())
    return result, {r["name"]: r for r in result["configurations"]}


def test_bench_ab(tiny_checkpoint, tmp_path):
    result, rows = run_ab(tmp_path, "--model_path", str(tiny_checkpoint), "--steps", "4,2", "--dtypes",
                          "float32,bfloat16", "--quantize", "int8")
    assert list(rows) == [NV32, NV16, NVS, FAST32, "gr00t-fast torch 2-step fp32", "gr00t-fast server fp32", FAST16,
                          "gr00t-fast torch 2-step bf16", FAST_INT8, "gr00t-fast torch 2-step fp32 int8"]
    assert [(rows[n]["dtype"], rows[n]["quantize"]) for n in (NV32, NV16, NVS, FAST32, FAST16, FAST_INT8)] == [
        ("float32", None), ("bfloat16", None), ("float32", None), ("float32", None), ("bfloat16", None),
        ("float32", "int8")]
    for row in rows.values():
        assert row["successful_runs"] == 2 and row["first_call_ms"] > 0 and row["p10"] <= row["p90"]
        assert set(row["ratio"]) == {NV32, NV16, NVS} and row["peak_rss_mb"] > 0 and row["load_s"] > 0
        for ratio, low, high in row["ratio"].values():
            assert low <= ratio <= high
        # like for like: each row against NVIDIA in-process in its own precision
        assert row["nvidia_same_dtype"] == (NV16 if row["dtype"] == "bfloat16" else NV32)
    # both sides split their time into the same three stages, in each precision
    for name in (NV32, NV16, FAST32, FAST16, FAST_INT8):
        assert set(rows[name]["stage_median_ms"]) == {"preprocess", "model", "postprocess"}
    # same checkpoint, observation and noise: NVIDIA's server computes exactly its in-process fp32 actions;
    # gr00t-fast fp32 differs only through torch's resampling version (tests/upstream/test_upstream.py)
    assert rows[NVS]["max_action_diff_vs_nvidia_fp32"] == 0.0
    assert rows[FAST32]["max_action_diff_vs_nvidia_fp32"] < 0.05
    assert rows[FAST32]["max_action_diff_vs_nvidia_same_dtype"] == rows[FAST32]["max_action_diff_vs_nvidia_fp32"]
    assert rows["gr00t-fast server fp32"]["max_action_diff_vs_nvidia_fp32"] == rows[FAST32]["max_action_diff_vs_nvidia_fp32"]
    # bf16 on each side against NVIDIA fp32 and against each other, int8 against fp32: finite, not zero
    for name, key in [(NV16, "fp32"), (FAST16, "fp32"), (FAST16, "same_dtype"), (FAST_INT8, "fp32")]:
        value = rows[name][f"max_action_diff_vs_nvidia_{key}"]
        assert math.isfinite(value) and value > 0, (name, key, value)
    assert rows[NV16]["max_action_diff_vs_nvidia_same_dtype"] is None  # itself
    assert rows["gr00t-fast torch 2-step bf16"]["max_action_diff_vs_nvidia_fp32"] is None  # other step count
    # the step/refill view runs the fp32 rows
    loops = {r["name"]: r for r in result["step_refill"]}
    assert set(loops) == {NVS, FAST32, "gr00t-fast torch 2-step fp32", "gr00t-fast server fp32"}
    assert all(r["steps"] == 16 and r["refills"] == 2 for r in loops.values())
    assert result["nvidia_torch_threads"] == 2 and result["dtypes"] == ["float32", "bfloat16"]
    assert result["quantize"] == ["int8"] and not result["sequential"]
    # what int8 converted, per gr00t-fast row and in the notes (the CPU's size rule may keep every layer in float)
    converted = rows[FAST_INT8]["precision"]["quantization"]
    assert converted["mode"] == "int8" and rows[FAST32]["precision"]["quantization"] is None
    assert rows[NV32]["precision"] is None
    assert f"gr00t-fast fp32 int8: float32, int8 matmuls in {converted['converted']} of" in (tmp_path / "ab.md").read_text()
    assert result["default_precision"] == {**result["precision"], "requested": "auto", "dtype": "float32"}  # pinned
    assert set(result["environment"]["cpu_flags"]) >= {"amx_bf16", "avx512_bf16", "avx2"}
    markdown = (tmp_path / "ab.md").read_text()
    for column in ("Speed-up vs NVIDIA in-process fp32 [95% CI]", "Speed-up vs NVIDIA in-process, same precision",
                   "Speed-up vs NVIDIA server fp32 [95% CI]", "Max Δ action vs NVIDIA in-process fp32",
                   "Max Δ action vs NVIDIA in-process, same precision", "Peak RSS (MB)",
                   "Refill speed-up vs NVIDIA server", "CPU flags present"):
        assert column in markdown, column
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_ab_sequential(tiny_checkpoint, tmp_path):
    """One configuration at a time: the same rows and action differences, each with its own peak memory."""
    result, rows = run_ab(tmp_path, "--model_path", str(tiny_checkpoint), "--dtypes", "float32", "--sequential")
    assert list(rows) == [NV32, NVS, FAST32, "gr00t-fast server fp32"] and result["sequential"]
    assert all(r["successful_runs"] == 2 and r["peak_rss_mb"] > 0 for r in rows.values())
    assert rows[NVS]["max_action_diff_vs_nvidia_fp32"] == 0.0
    assert rows[FAST32]["max_action_diff_vs_nvidia_fp32"] < 0.05
    assert "--sequential: each configuration ran to the end" in (tmp_path / "ab.md").read_text()


def test_bench_ab_against_nvidias_server_you_run(tiny_checkpoint, tmp_path):
    """Terminal 1: NVIDIA's inference_service.py --server on the checkpoint (started here as a user would); terminal 2:
    `bench ab --upstream_port` times gr00t-fast in-process against it on the same observation."""
    from gr00t_fast import load_policy
    from gr00t_fast.dev.bench.ab import Inputs, upstream_server
    from gr00t_fast.dev.bench.common import bench_noise, bench_observation

    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    inputs = Inputs(bench_observation(policy, 0), bench_noise(policy, 0), 4, "so100", "new_embodiment",
                    tuple(policy.data_config.video_keys), policy.device)
    (tmp_path / "server").mkdir()
    with upstream_server(Upstream.find(), tiny_checkpoint, inputs, tmp_path / "server") as (port, _, _):
        result, rows = run_ab(tmp_path / "out", "--model_path", str(tiny_checkpoint), "--upstream_port", str(port),
                              "--dtypes", "float32")
    assert NVS in rows and rows[NVS]["successful_runs"] == 2 and FAST32 in rows
    assert set(rows[FAST32]["ratio"]) >= {NVS}
    assert f"the one running at 127.0.0.1:{port}" in (tmp_path / "out" / "ab.md").read_text()
