"""Checkpoint loading: layouts, dtypes, LeRobot prefix, and every error."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t_fast.dev.make_checkpoint import main as make_checkpoint_main
from gr00t_fast.model import CheckpointError, load_model
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.fusion import fuse_state_dict


@pytest.fixture()
def ckpt(tiny_checkpoint, tmp_path):
    """A private copy of the tiny checkpoint that a test may damage."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def all_tensors(path):
    out = {}
    for f in sorted(path.glob("model-*.safetensors")):
        out.update(load_file(f))
    return out


def as_single_file(path, tensors):
    for f in path.glob("model*.safetensors*"):
        f.unlink()
    save_file(tensors, str(path / "model.safetensors"))


def test_sharded_checkpoint_loads_every_tensor(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu")
    on_disk = fuse_state_dict(model, all_tensors(tiny_checkpoint))  # q/k/v and gate/up fused as the model holds them
    state = model.state_dict()
    assert set(state) <= set(on_disk)
    assert all(torch.equal(state[k], on_disk[k]) for k in state)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_single_file_bf16_and_lerobot_prefix(ckpt):
    tensors = all_tensors(ckpt)
    as_single_file(ckpt, {"_groot_model." + k: v.to(torch.bfloat16) for k, v in tensors.items()})
    model = load_model(ckpt, device="cpu", dtype=torch.float32)
    name = "action_head.future_tokens.weight"
    assert model.dtype == torch.float32
    assert torch.equal(model.state_dict()[name], tensors[name].to(torch.bfloat16).float())
    assert load_model(ckpt, device="cpu", dtype="bfloat16").dtype == torch.bfloat16


def test_unused_tensors_are_skipped(ckpt):
    tensors = all_tensors(ckpt)
    assert any(".vision_model.head." in k for k in tensors)  # stored like the official checkpoints
    emb = tensors["backbone.eagle_model.language_model.model.embed_tokens.weight"]
    tensors["backbone.eagle_model.language_model.lm_head.weight"] = emb.clone()
    as_single_file(ckpt, tensors)
    load_model(ckpt, device="cpu")


def test_missing_unexpected_and_wrong_shape_listed_in_one_error(ckpt):
    tensors = all_tensors(ckpt)
    del tensors["action_head.vlln.weight"]
    tensors["action_head.bogus.weight"] = torch.zeros(3)
    tensors["action_head.future_tokens.weight"] = torch.zeros(7, 7)
    as_single_file(ckpt, tensors)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    text = str(err.value)
    assert "1 missing" in text and "action_head.vlln.weight" in text
    assert "1 unexpected" in text and "action_head.bogus.weight" in text
    assert "1 wrongly shaped" in text and "future_tokens.weight: checkpoint [7, 7]" in text


def test_corrupt_weight_file(ckpt):
    shard = sorted(ckpt.glob("model-*.safetensors"))[0]
    shard.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(ckpt, device="cpu")


def test_missing_shard_and_missing_config(ckpt):
    sorted(ckpt.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(CheckpointError, match="missing weight files"):
        load_model(ckpt, device="cpu")
    (ckpt / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(ckpt, device="cpu")


def retarget_index(ckpt, target):
    """Point the index's first shard at `target` instead."""
    index_file = ckpt / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    first = sorted(set(index["weight_map"].values()))[0]
    index["weight_map"] = {k: (target if v == first else v) for k, v in index["weight_map"].items()}
    index_file.write_text(json.dumps(index))
    return ckpt / first


@pytest.mark.parametrize("entry", ["../outside/s.safetensors", "/etc/passwd", "link.safetensors", "."])
def test_an_index_entry_outside_the_folder_is_refused_before_it_is_opened(entry, ckpt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shard = retarget_index(ckpt, entry)
    shutil.copy(shard, outside / "s.safetensors")  # a valid shard: only where it lies is wrong
    (ckpt / "link.safetensors").symlink_to(outside / "s.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    text = str(err.value)
    assert f"model.safetensors.index.json names {entry!r}, which is outside the checkpoint folder" in text, text
    assert len(text.splitlines()) == 1


def test_a_symlinked_single_file_outside_the_folder_is_refused(ckpt, tmp_path):
    tensors = all_tensors(ckpt)
    as_single_file(ckpt, tensors)
    (ckpt / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (ckpt / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors is a link, which is outside the checkpoint folder"):
        load_model(ckpt, device="cpu")


def test_a_symlinked_shard_inside_the_folder_and_a_hub_cache_blob_load(ckpt, tmp_path):
    shard = sorted(ckpt.glob("model-*.safetensors"))[0]
    (ckpt / "blob").mkdir()
    shard.rename(ckpt / "blob" / "data")
    shard.symlink_to(ckpt / "blob" / "data")
    load_model(ckpt, device="cpu")
    repo = tmp_path / "models--org--name"  # huggingface_hub's layout: snapshots link into the repository's blobs
    (repo / "snapshots").mkdir(parents=True)
    shutil.move(ckpt / "blob", repo / "blobs")
    snapshot = shutil.move(ckpt, repo / "snapshots" / "0123abcd")
    (snapshot / shard.name).unlink()
    (snapshot / shard.name).symlink_to("../../blobs/data")
    load_model(snapshot, device="cpu")


@pytest.mark.parametrize("content, found", [
    ("[1, 2]", "found list"), ("null", "found NoneType"), ('{"weight_map": ["a"]}', "found list"),
    ('{"metadata": {}}', "found NoneType"),
])
def test_an_index_of_the_wrong_json_shape_is_one_line(content, found, ckpt):
    (ckpt / "model.safetensors.index.json").write_text(content)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    assert "is not a valid safetensors index" in str(err.value) and found in str(err.value)


def test_a_weight_map_value_that_is_no_file_name_is_named(ckpt):
    retarget_index(ckpt, 7)
    with pytest.raises(CheckpointError, match=r"weight_map\[.*\] must be a file name, got 7"):
        load_model(ckpt, device="cpu")


def test_an_unreadable_shard_is_a_permission_error_and_a_file_is_no_checkpoint_folder(ckpt):
    import os

    shard = sorted(ckpt.glob("model-*.safetensors"))[0]
    if os.geteuid() == 0:  # root reads anything: a folder in place of the shard is the unreadable file here
        shard.unlink()
        shard.mkdir()
        with pytest.raises(CheckpointError, match="not regular files"):
            load_model(ckpt, device="cpu")
    else:
        shard.chmod(0)
        with pytest.raises(CheckpointError, match="cannot read .*: permission denied"):
            load_model(ckpt, device="cpu")
    with pytest.raises(FileNotFoundError, match="is a file, not a checkpoint directory"):
        load_model(ckpt / "config.json", device="cpu")


def test_a_large_mismatch_is_one_line_with_its_counts(ckpt):
    tensors = all_tensors(ckpt)
    as_single_file(ckpt, {f"{k}.renamed": v for k, v in tensors.items()})
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    text = str(err.value)
    assert len(text.splitlines()) == 1 and len(text) < 1000
    import re

    assert re.search(r": \d+ missing \(.* and \d+ more\); \d+ unexpected \(.* and \d+ more\)$", text), text


def test_bad_config_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(ckpt, device="cpu")


def test_wrong_model_type(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "gr00t_n1_6"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="gr00t_n1_5"):
        load_model(ckpt, device="cpu")


def test_explicit_eagle_path(ckpt, tmp_path):
    eagle = shutil.move(str(ckpt / "eagle2_hg_model"), str(tmp_path / "assets"))
    cfg = Gr00tConfig.from_checkpoint(ckpt, eagle_path=eagle)
    assert cfg.eagle_dir == tmp_path / "assets" and cfg.llm.hidden_size == 96
    with pytest.raises(FileNotFoundError, match="eagle_path"):
        Gr00tConfig.from_checkpoint(ckpt, eagle_path=tmp_path / "nowhere")


def test_make_checkpoint_cli(tmp_path, capsys):
    assert make_checkpoint_main(["--size", "tiny", "--out", str(tmp_path / "c"), "--seed", "3"]) == 0
    assert "parameters" in capsys.readouterr().out
    index = json.loads((tmp_path / "c" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2
    meta = json.loads((tmp_path / "c" / "experiment_cfg" / "metadata.json").read_text())["new_embodiment"]
    assert set(meta["modalities"]["video"]) == {"webcam", "front", "wrist"}
    assert meta["modalities"]["video"]["webcam"]["resolution"] == [640, 480]
    assert meta["statistics"]["state"]["single_arm"]["min"].__len__() == 5
    load_model(tmp_path / "c", device="cpu")


def test_same_seed_same_weights(tmp_path):
    from gr00t_fast.model.random_checkpoint import write_checkpoint

    a = all_tensors(write_checkpoint(tmp_path / "a", "tiny", seed=1, progress=False))
    b = all_tensors(write_checkpoint(tmp_path / "b", "tiny", seed=1, progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_make_checkpoint_files_share_one_mode_and_a_full_out_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "c"
    assert make_checkpoint_main(["--size", "tiny", "--out", str(out)]) == 0
    modes = {f.relative_to(out).as_posix(): oct(f.stat().st_mode & 0o777) for f in out.rglob("*") if f.is_file()}
    assert len(set(modes.values())) == 1, modes  # the shards too (safetensors alone writes them 0600)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # nothing left of the staging folder
    with pytest.raises(SystemExit) as exit_:
        make_checkpoint_main(["--size", "tiny", "--out", str(out)])
    assert exit_.value.code == 2
    assert f"--out {out} exists and is not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("moment", ["before the fit's progress shows", "during the fit"])
def test_ctrl_c_during_make_checkpoint_leaves_nothing_at_out(tmp_path, moment):
    """Half a second after the staging folder appeared, a Ctrl-C lands before the fit's progress shows (writing the
    checkpoint or starting the fit: with torch's CUDA build one was lost there 2 of 3 times in an earlier session,
    the catcher not found; not reproduced since); once the fit's progress shows, it lands in the fit."""
    import signal
    import time

    from processes import Command

    out = tmp_path / "fitted"
    command = Command(["make-checkpoint", "--size", "tiny", "--out", str(out), "--demo_task", "reach",
                       "--demo_steps", "100000"])
    deadline = time.monotonic() + 300
    shown = "fitting the reach task" if moment == "during the fit" else ""
    while not (list(tmp_path.glob(".fitted.tmp*")) and shown in "".join(command.err)) \
            and command.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not shown:
        time.sleep(0.5)
    command.send(signal.SIGINT)
    code, _, err = command.finish()
    assert code == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"gr00t-fast make-checkpoint: interrupted; nothing written to {out}"
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_a_library_catches_as_the_fit_begins_still_stops_make_checkpoint(tmp_path, monkeypatch, capsys,
                                                                                  python_sigint):
    """A Ctrl-C that something caught on its way (planted: the optimizer's construction catches it, as libraries that
    probe an import catch the ImportError an interrupted extension makes of it) is raised again after the fit's
    first step: nothing at --out, exit 130."""
    import signal

    class Catching(torch.optim.AdamW):
        steps = 0

        def __init__(self, *args, **kwargs):
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass
            super().__init__(*args, **kwargs)

        def step(self, *args, **kwargs):
            Catching.steps += 1
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", Catching)
    out = tmp_path / "fitted"
    assert make_checkpoint_main(["--size", "tiny", "--out", str(out), "--demo_task", "reach",
                                 "--demo_steps", "200"]) == 130
    assert Catching.steps == 1 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"gr00t-fast make-checkpoint: interrupted; nothing written to {out}"


def test_only_reads_the_named_tensors_and_still_checks_every_one(ckpt):
    """`only` (the host of exported graphs) reads the named tensors alone, the rest stay on the meta device, and a
    checkpoint that does not match its config is refused all the same."""
    from gr00t_fast.model.graphs import GRAPH_HOST_TENSORS
    from gr00t_fast.model.loading import is_complete

    full = load_model(ckpt, device="cpu")
    host = load_model(ckpt, device="cpu", only=GRAPH_HOST_TENSORS)
    assert is_complete(full) and not is_complete(host)
    loaded = {name: tensor for name, tensor in host.state_dict().items() if not tensor.is_meta}
    assert set(loaded) == set(GRAPH_HOST_TENSORS)
    assert all(torch.equal(tensor, full.state_dict()[name]) for name, tensor in loaded.items())
    assert (host.device, host.dtype) == (full.device, full.dtype)
    tensors = all_tensors(ckpt)
    del tensors["action_head.vlln.weight"]
    tensors["action_head.vlln.bias"] = torch.zeros(3)
    as_single_file(ckpt, tensors)
    with pytest.raises(CheckpointError, match="1 missing .*action_head.vlln.weight.*1 wrongly shaped"):
        load_model(ckpt, device="cpu", only=GRAPH_HOST_TENSORS)


def test_the_meta_model_is_built_without_importing_torch_dynamo(tiny_checkpoint):
    """`build_meta_model` leaves out nn.init's fills: a meta `normal_` would import torch._dynamo (~1 s of a load)."""
    import subprocess
    import sys

    probe = ("import sys; from gr00t_fast.model.config import Gr00tConfig; "
             "from gr00t_fast.model.loading import build_meta_model; "
             f"model = build_meta_model(Gr00tConfig.from_checkpoint({str(tiny_checkpoint)!r})); "
             "print('torch._dynamo' in sys.modules, all(p.is_meta for p in model.parameters()))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float8_e5m2,
                                   torch.float8_e4m3fn])
def test_the_finite_check_of_a_weight_is_exact_where_its_sum_overflows(dtype, ckpt):
    """The load's NaN/inf check sums a tensor first: finite values whose sum leaves the dtype's range still load, and
    a NaN, an inf, or an inf beside a -inf (a sum of NaN) is found in each dtype (float8 e4m3 has no inf, and an inf
    cast to it saturates: a NaN stands in)."""
    from gr00t_fast.model.loading import all_finite

    big = torch.finfo(dtype).max * 0.75
    assert all_finite(torch.tensor([big, big, 1.0]).to(dtype))
    inf = float("nan") if dtype == torch.float8_e4m3fn else float("inf")
    for bad in ([1.0, float("nan")], [inf, 1.0], [inf, -inf], [big, big, -inf]):
        assert not all_finite(torch.tensor(bad).to(dtype)), bad
    tensors = all_tensors(ckpt)
    name = "action_head.vlln.weight"
    tensors[name] = torch.full_like(tensors[name], torch.finfo(torch.float32).max * 0.75)
    as_single_file(ckpt, tensors)
    assert torch.equal(load_model(ckpt, device="cpu").state_dict()[name], tensors[name])
