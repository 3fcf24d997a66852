"""`gr00t-fast bench ab` end to end against NVIDIA's real pipeline (its Gr00tPolicy process and its
inference_service.py server) on a make-checkpoint output, 2 repetitions; skipped where NVIDIA's environment is
not built (GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC). Checks what the benchmark reports, never durations."""

import json

import pytest

from gr00t_fast.dev import bench
from gr00t_fast.dev.upstream import Upstream

try:
    Upstream.find()
except ValueError as e:
    pytest.skip(f"NVIDIA's pipeline is not available: {e}", allow_module_level=True)


def test_bench_ab(tiny_checkpoint, tmp_path):
    argv = ["ab", "--model_path", str(tiny_checkpoint), "--steps", "4,2", "--action_horizon", "8",
            "--loop_chunks", "2", "--bootstrap", "200", "--reps", "2", "--warmup", "1", "--threads", "2",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "ab.json").read_text())
    rows = {r["name"]: r for r in result["configurations"]}
    assert list(rows) == ["NVIDIA in-process", "NVIDIA server", "gr00t-fast torch 4-step", "gr00t-fast torch 2-step",
                          "gr00t-fast server"]
    for row in rows.values():
        assert row["successful_runs"] == 2 and row["first_call_ms"] > 0 and row["p10"] <= row["p90"]
        ratio, low, high = row["ratio"]["NVIDIA in-process"]
        assert low <= ratio <= high and set(row["ratio"]) == {"NVIDIA in-process", "NVIDIA server"}
    # both sides split their time into the same three stages
    for name in ("NVIDIA in-process", "gr00t-fast torch 4-step"):
        assert set(rows[name]["stage_median_ms"]) == {"preprocess", "model", "postprocess"}
    # same checkpoint, observation and noise: NVIDIA's server computes exactly its in-process actions; gr00t-fast
    # differs only through torch's resampling version (tests/upstream/test_upstream.py); other step counts differ
    assert rows["NVIDIA server"]["max_action_diff_vs_nvidia"] == 0.0
    assert rows["gr00t-fast torch 4-step"]["max_action_diff_vs_nvidia"] < 0.05
    assert rows["gr00t-fast server"]["max_action_diff_vs_nvidia"] == rows["gr00t-fast torch 4-step"]["max_action_diff_vs_nvidia"]
    assert rows["gr00t-fast torch 2-step"]["max_action_diff_vs_nvidia"] is None
    loops = {r["name"]: r for r in result["step_refill"]}
    assert set(loops) == {"NVIDIA server", "gr00t-fast torch 4-step", "gr00t-fast torch 2-step", "gr00t-fast server"}
    assert all(r["steps"] == 16 and r["refills"] == 2 for r in loops.values())
    assert result["nvidia_torch_threads"] == 2
    markdown = (tmp_path / "ab.md").read_text()
    assert "Speed-up vs NVIDIA server [95% CI]" in markdown and "Refill speed-up vs NVIDIA server" in markdown
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
