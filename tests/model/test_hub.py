"""`--model_path ORG/NAME`: Hugging Face model ids resolved by huggingface_hub against a cache this test lays out as
huggingface_hub writes one (blobs, snapshots of symlinks into them, refs naming commits), offline, in Isaac-GR00T's
layout and LeRobot's (whose Eagle processor files then come from the same cache)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr00t_fast.model.hub import HubError, resolve_checkpoint

REPO_ID = "acme/gr00t-n15-tiny"
EAGLE_REPO = "lerobot/eagle2hg-processor-groot-n1p5"


def cache_repo(cache: Path, repo_id: str, files: Path, ref: str = "main", commit: str | None = None,
               repo_type: str = "model") -> Path:
    """`files` as huggingface_hub caches a repository's snapshot: each file a blob named by its hash, the snapshot
    a tree of relative symlinks into the blobs, `refs/<ref>` naming the commit. Returns the snapshot folder."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = commit or hashlib.sha1(f"{repo_id}@{ref}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline (the environment for processes, huggingface_hub's constants here)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def gr00t_fast(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gr00t_fast.cli", *argv], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.mark.slow
def test_run_drives_the_simulation_from_a_cached_model_id(hub_cache, tiny_checkpoint):
    if importlib.util.find_spec("mujoco") is None:  # not imported here: MuJoCo picks its GL backend at import
        pytest.skip("the simulation extra is not installed")
    snapshot = cache_repo(hub_cache, REPO_ID, tiny_checkpoint)
    done = gr00t_fast("run", "--robot.type=so100_sim", f"--model_path={REPO_ID}", "--device=cpu", "--max_steps=3")
    assert done.returncode == 0, done.stderr
    assert f"loading {snapshot} ..." in done.stdout and "3 steps done" in done.stdout


def test_a_revision_picks_its_snapshot_and_a_local_folder_wins(hub_cache, tiny_checkpoint, tmp_path, monkeypatch):
    main = cache_repo(hub_cache, REPO_ID, tiny_checkpoint)
    tagged = cache_repo(hub_cache, REPO_ID, tiny_checkpoint, ref="v1.0")
    assert resolve_checkpoint(REPO_ID) == main
    assert resolve_checkpoint(REPO_ID, "v1.0") == tagged
    local = tmp_path / "cwd" / REPO_ID
    shutil.copytree(tiny_checkpoint, local)
    monkeypatch.chdir(tmp_path / "cwd")
    assert resolve_checkpoint(REPO_ID) == Path(REPO_ID)  # the folder of that name, not the cached model


def test_load_policy_export_and_bench_take_a_model_id(hub_cache, tiny_checkpoint, tmp_path):
    from gr00t_fast import load_policy
    from gr00t_fast.dev.bench.common import checkpoint_path
    from gr00t_fast.export import cli as export_cli

    snapshot = cache_repo(hub_cache, REPO_ID, tiny_checkpoint)
    by_id = load_policy(REPO_ID, device="cpu", warmup=False)
    by_folder = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    name = "action_head.future_tokens.weight"
    assert torch.equal(by_id.model.state_dict()[name], by_folder.model.state_dict()[name])
    assert checkpoint_path(REPO_ID, "tiny") == snapshot
    assert export_cli.main(["onnx", "--model_path", REPO_ID, "--out", str(tmp_path / "onnx"), "--denoising_steps",
                            "1"]) == 0
    assert (tmp_path / "onnx" / "manifest.json").is_file()


def test_a_lerobot_checkpoint_and_its_eagle_processor_resolve_from_the_cache(hub_cache, tiny_checkpoint, tmp_path,
                                                                            monkeypatch):
    from lerobot_n15_format import write_lerobot_n15

    from gr00t_fast import load_policy

    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "empty_lerobot_home"))  # not there: from the Hub cache
    stats = {key: {"min": torch.full((6,), -90.0), "max": torch.full((6,), 90.0)}
             for key in ("observation.state", "action")}
    folder = write_lerobot_n15(tmp_path / "lerobot_ckpt", tiny_checkpoint, {"front": (480, 640)}, stats)
    cache_repo(hub_cache, "me/so100-groot", folder)
    eagle = cache_repo(hub_cache, EAGLE_REPO, tiny_checkpoint / "eagle2_hg_model")
    policy = load_policy("me/so100-groot", device="cpu", warmup=False)
    assert policy.model.config.eagle_dir == eagle
    assert list(policy.data_config.video_keys) == ["video.front"]


@pytest.mark.parametrize("command", [["run", "--robot.type=so100_sim"], ["serve"], ["bench", "inference"],
                                     ["export", "onnx", "--out", "unused"]])
@pytest.mark.slow
def test_an_id_neither_cached_nor_reachable_is_one_line(command, hub_cache, tmp_path):
    done = gr00t_fast(*command, "--model_path", "nvidia/GR00T-N1.5-3B", "--revision", "v9", cwd=tmp_path)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert ("--model_path nvidia/GR00T-N1.5-3B (revision v9) is not in the Hugging Face cache "
            f"({hub_cache}) and HF_HUB_OFFLINE is set: this machine is offline") in err, err
    assert not (tmp_path / "unused").exists()


def test_hub_errors_are_one_line(hub_cache):
    with pytest.raises(HubError) as raised:
        resolve_checkpoint("acme/missing")
    assert "\n" not in str(raised.value) and "revision main" in str(raised.value)


@pytest.mark.slow
def test_a_ref_pointing_outside_the_cache_is_refused(hub_cache, tiny_checkpoint, tmp_path):
    """The repro: `refs/main` holding `../../../../../tmp/x` loaded a checkpoint from outside the cache under the
    id's name. A ref is a commit hash, and the snapshot is that commit's folder in the cache: else one line."""
    cache_repo(hub_cache, REPO_ID, tiny_checkpoint)
    outside = shutil.copytree(tiny_checkpoint, tmp_path / "x")
    repo = hub_cache / f"models--{REPO_ID.replace('/', '--')}"
    traversal = os.path.relpath(outside, repo / "snapshots")
    assert traversal.startswith("../")
    (repo / "refs" / "main").write_text(traversal)
    with pytest.raises(HubError, match="refusing its cached snapshot, its ref .*refs/main holds '../") as raised:
        resolve_checkpoint(REPO_ID)
    assert "\n" not in str(raised.value)
    done = gr00t_fast("run", "--robot.type=so100_sim", "--max_steps", "1", "--model_path", REPO_ID, cwd=tmp_path)
    assert done.returncode == 2 and "not a commit hash" in done.stderr and "loading" not in done.stdout, done.stderr
    (repo / "snapshots" / ("f" * 40)).symlink_to(outside)  # a commit's folder that is a link out of the cache
    (repo / "refs" / "main").write_text("f" * 40)
    with pytest.raises(HubError, match=f"resolves to {outside}, not a commit's folder"):
        resolve_checkpoint(REPO_ID)


@pytest.mark.parametrize("repo_id, name", [(REPO_ID, "config.json"), (REPO_ID, "experiment_cfg/metadata.json"),
                                           (EAGLE_REPO, "tokenizer_config.json"), (EAGLE_REPO, "config.json")])
def test_a_file_linked_out_of_the_cache_is_never_read(hub_cache, tiny_checkpoint, tmp_path, repo_id, name,
                                                      monkeypatch):
    """config.json, metadata.json and the Eagle tokenizer and config, symlinked out of the snapshot, were followed;
    every file must resolve into the repository's blobs/ (or lie in the snapshot itself)."""
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "empty_lerobot_home"))  # not there: from the Hub cache
    files = tiny_checkpoint if repo_id == REPO_ID else tiny_checkpoint / "eagle2_hg_model"
    snapshot = cache_repo(hub_cache, repo_id, files)
    assert (snapshot / name).is_symlink()
    stolen = shutil.copy(files / name, tmp_path / "elsewhere.json")
    (snapshot / name).unlink()
    (snapshot / name).symlink_to(stolen)
    with pytest.raises(HubError, match=f"{name} resolves to {stolen}, outside the cache's .*blobs"):
        from gr00t_fast.model.hub import snapshot as hub_snapshot

        hub_snapshot(repo_id)
    if repo_id == EAGLE_REPO:  # a LeRobot checkpoint's Eagle assets come from there: the load says why not
        from lerobot_n15_format import write_lerobot_n15

        from gr00t_fast import load_policy

        stats = {key: {"min": torch.full((6,), -90.0), "max": torch.full((6,), 90.0)}
                 for key in ("observation.state", "action")}
        folder = write_lerobot_n15(tmp_path / "lerobot_ckpt", tiny_checkpoint, {"front": (480, 640)}, stats)
        with pytest.raises(HubError, match=f"Eagle assets {EAGLE_REPO} .*refusing its cached snapshot, {name}"):
            load_policy(folder, device="cpu", warmup=False)
        return
    (snapshot / name).unlink()
    shutil.copy(stolen, snapshot / name)  # a plain file in the snapshot (caches without symlinks) is read
    assert resolve_checkpoint(repo_id) == snapshot


def test_eval_reads_a_dataset_id_from_the_cache(hub_cache, tiny_checkpoint, tmp_path, capsys):
    """`gr00t-fast eval --dataset_path ORG/NAME`: a dataset snapshot in the Hugging Face cache, the same rules as a
    model id (a ref pointing outside the cache is refused)."""
    from gr00t_fast.dev.recorded import write_v21
    from gr00t_fast.evaluation.cli import main

    snapshot = cache_repo(hub_cache, "me/so100_rec", write_v21(tmp_path / "rec", lengths=(20,), size=(96, 128)),
                          repo_type="dataset")
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", "me/so100_rec"]) == 0
    assert f"dataset {snapshot} (LeRobot v2.1" in capsys.readouterr().out
    repo = hub_cache / "datasets--me--so100_rec"
    (repo / "refs" / "main").write_text(os.path.relpath(tmp_path / "rec", repo / "snapshots"))  # a folder outside
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", "me/so100_rec"]) == 2
    assert "refusing its cached snapshot" in capsys.readouterr().err


def test_a_dataset_id_is_read_from_the_cache_alone_never_downloaded(hub_cache, tiny_checkpoint, monkeypatch, capsys):
    """A dataset can hold many GB of video: an id not in the cache is one line saying how to download it, and
    huggingface_hub is asked for the local files only (online or not)."""
    import huggingface_hub

    from gr00t_fast.evaluation.cli import main

    asked = []
    download = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        asked.append(kwargs.get("local_files_only"))
        return download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", "me/never_downloaded"]) == 2
    err = capsys.readouterr().err
    assert asked == [True]
    assert "is not in the Hugging Face cache" in err and "`hf download me/never_downloaded --repo-type dataset`" in err
