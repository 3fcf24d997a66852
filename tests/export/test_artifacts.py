"""Artifacts are matched to the weights they were made from and written whole (issue 47): the repros of another
checkpoint's graphs driving an arm, a killed re-export mixing two models, a truncated graph, a cache fooled by
copied weights with their times kept, and a killed make-checkpoint's leftover folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gr00t_fast.export import cli
from gr00t_fast.export.manifest import MANIFEST, ArtifactMismatch, IncompleteArtifacts, check_artifacts
from gr00t_fast.loading import load_policy
from gr00t_fast.model.loading import is_complete
from gr00t_fast.model.random_checkpoint import write_checkpoint
from gr00t_fast.runtime.atomic import staged
from gr00t_fast.runtime.cache import checkpoint_fingerprint
from processes import Command, default_stop_signals


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    """A second tiny checkpoint: the same shapes and file sizes as `tiny_checkpoint`, other weights."""
    out = tmp_path_factory.mktemp("ckpt") / "other"
    write_checkpoint(out, size="tiny", seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "onnx1"
    assert cli.main(["onnx", "--model_path", str(tiny_checkpoint), "--out", str(out), "--denoising_steps", "2"]) == 0
    return out


def actions(policy, steps: int = 2) -> torch.Tensor:
    from gr00t_fast.model.inputs import example_inputs

    inputs, noise = example_inputs(policy.model.config, seed=3)
    return policy.backend(inputs, noise, steps)


@pytest.mark.slow
def test_graphs_of_one_checkpoint_never_drive_the_arm_with_another(exported, tiny_checkpoint, other_checkpoint):
    """The repro: `export onnx --model_path ck1 --out onnx1`, then `run --model_path ck2 --backend onnxruntime
    --backend_dir onnx1` drove the arm with ck1's graphs; now it is one line naming both checkpoints, before the arm
    moves, and ck1 itself still runs on them."""
    run = Command(["run", "--model_path", str(other_checkpoint), "--backend", "onnxruntime", "--backend_dir",
                   str(exported), "--max_steps", "2"])
    code, out, err = run.finish()
    assert code == 2, (out, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("gr00t-fast run: error:") and f"exported from {tiny_checkpoint}" in line \
        and f"not from {other_checkpoint}" in line, err
    assert "steps done" not in out, out
    with pytest.raises(ArtifactMismatch, match="was exported from"):
        load_policy(other_checkpoint, backend="onnxruntime", backend_dir=exported, warmup=False)
    policy = load_policy(tiny_checkpoint, backend="onnxruntime", backend_dir=exported, warmup=False)
    reference = load_policy(tiny_checkpoint, dtype="float32", warmup=False)
    assert torch.allclose(actions(policy), actions(reference), atol=1e-4)


def test_weights_copied_over_with_their_times_kept_are_new_weights(tiny_checkpoint, other_checkpoint, tmp_path):
    """The cache's key is the weights' content: ck2's shards copied over ck1's with the times set back (same names,
    sizes and mtimes) give ck2's actions from the onnxruntime backend's cached graphs, not ck1's."""
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    first = load_policy(ckpt, backend="onnxruntime", warmup=False)
    before = checkpoint_fingerprint(ckpt)
    for shard in sorted(ckpt.glob("*.safetensors")):
        stat = shard.stat()
        shutil.copyfile(other_checkpoint / shard.name, shard)
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert (shard.stat().st_size, shard.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert checkpoint_fingerprint(ckpt) == checkpoint_fingerprint(other_checkpoint) != before
    second = load_policy(ckpt, backend="onnxruntime", warmup=False)
    assert second.backend.onnx_dir != first.backend.onnx_dir
    assert not is_complete(second.model)  # the graphs hold the network: the PyTorch model, the embedding table alone
    want = actions(load_policy(other_checkpoint, dtype="float32", warmup=False))
    assert torch.allclose(actions(second), want, atol=1e-4)
    assert not torch.allclose(actions(first), want, atol=1e-2)


@pytest.mark.slow
def test_a_killed_reexport_leaves_the_previous_export_whole(exported, tiny_checkpoint, other_checkpoint, tmp_path):
    """The repro: re-exporting another checkpoint into the same folder, killed (SIGKILL) once its first graph is
    written, left graphs of both. Now the folder is the first export, whole (its manifest checks every file), and
    the killed run's staging folder beside it is removed by the next export."""
    out = shutil.copytree(exported, tmp_path / "onnx1")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", "export", "onnx", "--model_path",
                                str(other_checkpoint), "--out", str(out), "--denoising_steps", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=default_stop_signals)
    staging = out.with_name(f".{out.name}.tmp{process.pid}")
    deadline = time.monotonic() + 120
    while not (staging / "vision" / "vision.onnx").is_file() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert staging.is_dir()  # what it left
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    check_artifacts(out, ("onnx", "int8"), tiny_checkpoint)
    with pytest.raises(ArtifactMismatch):
        check_artifacts(out, ("onnx", "int8"), other_checkpoint)
    assert cli.main(["onnx", "--model_path", str(other_checkpoint), "--out", str(out), "--denoising_steps", "2"]) == 0
    assert not staging.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["onnx1"]
    assert check_artifacts(out, ("onnx", "int8"), other_checkpoint)["checkpoint"] == str(other_checkpoint)


def test_a_truncated_or_unlisted_folder_is_not_a_model(exported, tiny_checkpoint, tmp_path):
    """A truncated graph was a raw InvalidProtobuf traceback, a folder without a manifest a model; both are one
    line now, and ONNX Runtime's own failure on a corrupt graph is one line too."""
    from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
    from gr00t_fast.model import load_model

    out = shutil.copytree(exported, tmp_path / "onnx")
    graph = out / "vl" / "vl.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(IncompleteArtifacts, match=r"vl/vl.onnx has \d+ bytes, its manifest.json says \d+"):
        load_policy(tiny_checkpoint, backend="onnxruntime", backend_dir=out, warmup=False)
    with pytest.raises(RuntimeError, match="vl.onnx cannot be loaded by ONNX Runtime, it is corrupt or truncated") as e:
        OnnxRuntimeBackend(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), out)
    assert "\n" not in str(e.value)
    shutil.copyfile(exported / "vl" / "vl.onnx", graph)
    (out / MANIFEST).unlink()
    with pytest.raises(IncompleteArtifacts, match="has no manifest.json: not a complete export"):
        load_policy(tiny_checkpoint, backend="onnxruntime", backend_dir=out, warmup=False)
    manifest = json.loads((exported / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "fingerprint"}))
    with pytest.raises(IncompleteArtifacts, match="older exports lack them"):
        check_artifacts(out, ("onnx", "int8"), tiny_checkpoint)
    (out / MANIFEST).write_text(json.dumps({**manifest, "target": "tensorrt"}))
    with pytest.raises(ArtifactMismatch, match="which backend 'onnxruntime' does not run"):
        load_policy(tiny_checkpoint, backend="onnxruntime", backend_dir=out, warmup=False)


def test_export_never_replaces_a_folder_that_is_not_an_export(tiny_checkpoint, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli.main(["onnx", "--model_path", str(tiny_checkpoint), "--out", str(mine)]) == 2
    assert "--out" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_cached_export_killed_midway_is_exported_again(tiny_checkpoint, tmp_path, monkeypatch):
    """The cache folder (the onnxruntime backend without --backend_dir) is renamed into place whole; one that lost
    a file since is exported again rather than loaded."""
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    policy = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False)
    folder = policy.backend.onnx_dir
    assert folder.parent == tmp_path / "cache" / "onnx"
    assert {p.name for p in folder.parent.iterdir()} == {folder.name, f".{folder.name}.lock"}  # and its lock file
    shutil.rmtree(folder / "llm")
    again = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False)
    assert again.backend.onnx_dir == folder and (folder / "llm" / "llm.onnx").is_file()
    check_artifacts(folder, ("onnx", "int8"), tiny_checkpoint)
    again.backend.ensure_sampler(2)  # a sampler for another step count joins the folder and its manifest
    assert "sampler_s2/sampler_s2.onnx" in check_artifacts(folder, ("onnx", "int8"), tiny_checkpoint)["files"]


@pytest.mark.slow
def test_graphs_mixed_between_two_cached_exports_are_exported_again(tiny_checkpoint, other_checkpoint, tmp_path,
                                                                     monkeypatch, caplog):
    """The cache's graphs are checked by content too: ck2's cached vision and sampler graphs copied over ck1's (the
    same sizes) are named in one line and ck1's graphs exported again before a call runs; ck1's actions."""
    import logging

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    ours = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False).backend.onnx_dir
    theirs = load_policy(other_checkpoint, backend="onnxruntime", warmup=False).backend.onnx_dir
    for graph in ("vision/vision.onnx", "sampler_s4/sampler_s4.onnx"):
        assert (ours / graph).stat().st_size == (theirs / graph).stat().st_size
        shutil.copy2(theirs / graph, ours / graph)
    with caplog.at_level(logging.WARNING, logger="gr00t_fast.export.onnx"):
        again = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False)
    assert "sampler_s4/sampler_s4.onnx is not the file its manifest.json lists" in caplog.text
    assert again.backend.onnx_dir == ours and check_artifacts(ours, ("onnx",), tiny_checkpoint)
    assert torch.allclose(actions(again), actions(load_policy(tiny_checkpoint, dtype="float32", warmup=False)),
                          atol=1e-4)


@pytest.mark.slow
def test_a_killed_make_checkpoint_leaves_nothing_behind_for_long(tmp_path):
    """A killed run's hidden staging folder (the checkpoint's size) is removed by the next run beside it; a
    replacement interrupted between its two renames puts the previous folder back."""
    out = tmp_path / "ckpt"
    process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", "make-checkpoint", "--size", "tiny", "--out",
                                str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=default_stop_signals)
    staging = out.with_name(f".ckpt.tmp{process.pid}")
    deadline = time.monotonic() + 120
    while not any(staging.glob("*.safetensors")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert staging.is_dir() and not out.exists()
    assert Command(["make-checkpoint", "--size", "tiny", "--out", str(out)]).finish()[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]

    previous = tmp_path / ".ckpt.old999999999"  # moved aside by a replacement that was killed (no such process)
    os.replace(out, previous)
    with staged(out, replace=True) as tmp:
        assert out.is_dir() and not previous.exists()  # put back before anything is written
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] and (out / "config.json").read_text() == "{}"


def test_graphs_copied_in_from_another_checkpoints_export_are_refused_by_content(exported, tiny_checkpoint,
                                                                                 other_checkpoint, tmp_path):
    """Two checkpoints of one architecture export graphs of equal sizes: the review copied checkpoint 2's vision and
    sampler graphs into checkpoint 1's export and drove the arm 235 degrees off. Each file's sha256 is in the
    manifest now: the copied file is named in one line before anything runs; the original file passes again."""
    from gr00t_fast.export.cli import main as export_main

    theirs = tmp_path / "theirs"
    assert export_main(["onnx", "--model_path", str(other_checkpoint), "--out", str(theirs), "--denoising_steps",
                        "2"]) == 0
    ours = shutil.copytree(exported, tmp_path / "ours")
    for graph in ("vision/vision.onnx", "sampler_s2/sampler_s2.onnx"):
        assert (theirs / graph).stat().st_size == (ours / graph).stat().st_size  # the size check let them through
        shutil.copy2(theirs / graph, ours / graph)  # times kept: only the content tells
    with pytest.raises(IncompleteArtifacts, match=r"sampler_s2/sampler_s2.onnx is not the file its manifest.json lists "
                                                  r"\(sha256 \w+, listed \w+\): replaced or copied in") as e:
        load_policy(tiny_checkpoint, backend="onnxruntime", backend_dir=ours, warmup=False)
    assert "\n" not in str(e.value)
    for graph in ("vision/vision.onnx", "sampler_s2/sampler_s2.onnx"):
        shutil.copy2(exported / graph, ours / graph)
    assert check_artifacts(ours, ("onnx", "int8"), tiny_checkpoint)["checkpoint"] == str(tiny_checkpoint)
