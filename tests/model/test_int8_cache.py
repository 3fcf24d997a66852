"""The int8 cache (`gr00t_fast.model.int8_cache`): a second `--quantize int8` load of the same checkpoint reads the
layers the first one saved, without a sample call, and acts the same bits; the key follows what the layers depend on;
a damaged, foreign or unwritable cache never changes what a load runs."""

import dataclasses
import errno
import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.multiprocessing.reductions import StorageWeakRef

from gr00t_fast.backends import pytorch
from gr00t_fast.backends.pytorch import int8_cache_folder
from gr00t_fast.export.artifacts import Artifacts
from gr00t_fast.loading import load_policy
from gr00t_fast.model import quantize
from gr00t_fast.model.inputs import example_inputs
from gr00t_fast.model import int8_cache as int8_cache_module
from gr00t_fast.model.int8_cache import INT8_CACHE_ENV, INT8_CACHE_FILE, Int8CacheError, read_layers
from gr00t_fast.model.loading import is_complete, load_model
from gr00t_fast.model.owned_weights import write_streamed
from gr00t_fast.model.quantize import Bf16Linear, QuantizedLinear
from gr00t_fast.runtime.cache import seal


@pytest.fixture
def int8_cache(monkeypatch, tmp_path, int8_at_every_size):
    """The int8 cache on, in a folder of the test's own; the tiny checkpoints' layers all int8."""
    monkeypatch.setenv(INT8_CACHE_ENV, "1")
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "int8"


def int8_policy(checkpoint, **options):
    return load_policy(checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False, **options)


def layer_kinds(model) -> dict[str, str]:
    return {name: f"{type(m).__name__}:{getattr(m, 'engine', '')}:{getattr(m, 'inv_smooth', None) is not None}"
            for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, QuantizedLinear, Bf16Linear))}


def actions(policy) -> torch.Tensor:
    inputs, noise = example_inputs(policy.model.config)
    return policy.backend(inputs, noise, 4)


@pytest.mark.parametrize("case", ["onednn", "onednn_prepacked", "fbgemm", "calibrated", "kept_in_bf16", "kept_float32",
                                  "outliers"])
def test_a_second_int8_load_reads_the_layers_the_first_saved_and_acts_the_same_bits(
        int8_cache, tiny_checkpoint, outlier_checkpoint, observations_file, monkeypatch, request, case):
    checkpoint = outlier_checkpoint if case == "outliers" else tiny_checkpoint
    options = {"calibration": observations_file} if case == "calibrated" else {}
    if case in ("fbgemm", "onednn_prepacked"):  # prepacked: on any CPU, the same sums at both loads
        request.getfixturevalue({"fbgemm": "fbgemm", "onednn_prepacked": "onednn_packed_anywhere"}[case])
    if case == "kept_in_bf16":
        monkeypatch.setattr(quantize, "bf16_units", lambda: "AVX512-BF16")
        monkeypatch.setattr(quantize, "MAX_LAYER_ERROR_BF16", 0.01)
    if case == "kept_float32":
        monkeypatch.setattr(quantize, "MAX_LAYER_ERROR", 0.01)
    first = int8_policy(checkpoint, **options)
    saved = first.model.precision.quantization
    assert saved["cache"].startswith(f"saved to {int8_cache}")
    monkeypatch.setattr("gr00t_fast.backends.pytorch.quantize_linears", lambda *a, **k: 1 / 0)  # no sample call now
    second = int8_policy(checkpoint, **options)
    read = second.model.precision.quantization
    assert read["cache"] == saved["cache"].replace("saved to", "read from").removesuffix(" for the next load")
    assert {k: v for k, v in read.items() if k != "cache"} == {k: v for k, v in saved.items() if k != "cache"}
    assert f"its layers read from {int8_cache}" in str(second.model.precision)
    kinds = layer_kinds(second.model)
    assert kinds == layer_kinds(first.model) and is_complete(second.model)
    if case == "kept_in_bf16":
        assert saved["too_lossy"] > 0 and sum(k.startswith("Bf16Linear") for k in kinds.values()) == saved["too_lossy"]
    if case == "kept_float32":
        assert saved["too_lossy"] > 0
    if case == "outliers":
        assert saved["smoothed"] > 0
    assert (saved["prepacked"] == saved["converted"] > 0) if case == "onednn_prepacked" else saved["prepacked"] == 0
    assert {k.split(":")[1] for k in kinds.values() if k.startswith("QuantizedLinear")} == \
        {"fbgemm" if case == "fbgemm" else "onednn"}
    assert torch.equal(actions(second), actions(first))
    assert [p.dtype for p in second.model.parameters()] == [p.dtype for p in first.model.parameters()]


def test_the_cache_is_keyed_by_what_the_layers_depend_on(int8_cache, tiny_checkpoint, outlier_checkpoint,
                                                         monkeypatch):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    inputs, noise = example_inputs(model.config)

    def folder(checkpoint=tiny_checkpoint, calls=((inputs, noise),)):
        return int8_cache_folder(model, Artifacts(checkpoint), calls)

    base = folder()
    assert base == folder() and base.parent == int8_cache
    assert folder(calls=[(inputs, noise.clone())]) == base
    assert folder(calls=[(inputs, noise + 1e-6)]) != base
    assert folder(calls=[(dataclasses.replace(inputs, state=inputs.state + 1e-6), noise)]) != base
    assert folder(calls=[(inputs, noise)] * 2) != base
    assert folder(outlier_checkpoint) != base
    with monkeypatch.context() as m:
        m.setattr("gr00t_fast.export.artifacts.code_digest", lambda: "other code")
        assert folder() != base
    with monkeypatch.context() as m:
        m.setattr(quantize, "int8_units", lambda: None)
        m.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")
        assert folder() != base
    with monkeypatch.context() as m:
        m.setattr(quantize, "bf16_units", lambda: "AVX512-BF16")
        assert folder() != base  # kept layers in bfloat16 at 2%
    with monkeypatch.context() as m:
        m.setattr(quantize, "MAX_LAYER_ERROR", 0.04)
        assert folder() != base
    with monkeypatch.context() as m:
        m.setattr(torch, "__version__", "9.9.9")
        assert folder() != base
    with monkeypatch.context() as m:
        m.setattr(model, "config", dataclasses.replace(model.config, num_inference_timesteps=7))
        assert folder() != base
    assert folder() == base
    assert int8_cache_folder(model.to(torch.bfloat16), Artifacts(tiny_checkpoint), [(inputs, noise)]) != base
    monkeypatch.setenv(INT8_CACHE_ENV, "0")
    assert folder() is None


def test_a_load_makes_its_synthetic_scenes_once_and_keys_its_cache_by_them(int8_cache, tiny_checkpoint, monkeypatch):
    made, digested = [], []
    scenes, digest = pytorch.calibration_inputs, pytorch.calls_digest
    monkeypatch.setattr(pytorch, "calibration_inputs", lambda *a: made.append(scenes(*a)) or made[-1])
    monkeypatch.setattr(pytorch, "calls_digest", lambda calls: digested.append(calls) or digest(calls))
    policy = int8_policy(tiny_checkpoint)
    assert len(made) == 1 and digested == made and len(made[0]) == pytorch.SYNTHETIC_CALLS
    assert policy.model.precision.quantization["synthetic"] == pytorch.SYNTHETIC_CALLS


def test_a_damaged_cache_file_is_named_and_made_again(int8_cache, tiny_checkpoint, caplog):
    first = int8_policy(tiny_checkpoint)
    file = next(int8_cache.glob(f"*/{INT8_CACHE_FILE}"))
    data = bytearray(file.read_bytes())
    data[-1] ^= 1  # a flipped bit in the last layer's levels
    file.write_bytes(bytes(data))
    again = int8_policy(tiny_checkpoint)
    assert "is not the file this cache wrote" in caplog.text
    assert again.model.precision.quantization["cache"].startswith("saved to")
    assert torch.equal(actions(again), actions(first))


def test_a_cache_file_that_does_not_fit_the_model_is_refused_before_any_layer_changes(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    first, name = [f"backbone.eagle_model.language_model.model.layers.{i}.mlp.down_proj" for i in (0, 1)]
    layer = model.get_submodule(name)
    out, inp = layer.out_features, layer.in_features
    stack_layers = len(quantize.stack_linears(model))
    before = layer_kinds(model)

    def cache_file(levels_shape, scale, layer_name=name, decided=stack_layers) -> Path:
        """A file whose first layer fits and whose last (`layer_name`) is as given."""
        tensors = {f"{first}.levels": torch.zeros(out, inp, dtype=torch.int8), f"{first}.scale": torch.ones(out, 1),
                   f"{layer_name}.levels": torch.zeros(levels_shape, dtype=torch.int8), f"{layer_name}.scale": scale}
        layers = {n: {"mode": "int8", "fitted": False} for n in (first, layer_name)}
        meta = {"counts": {"converted": 2, "kept": decided - 2}, "layers": layers}
        file = tmp_path / "int8_layers.safetensors"
        write_streamed(file, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, tensors.__getitem__,
                       {"gr00t_fast.int8": json.dumps(meta)})
        return file

    with pytest.raises(Int8CacheError, match=f"{name}.levels is torch.int8 \\[{out}, {inp + 1}\\], this model's "):
        read_layers(model, cache_file((out, inp + 1), torch.ones(out, 1)))
    for scale in (float("nan"), 0.0, -1.0):
        with pytest.raises(Int8CacheError, match=f"{name}.scale holds values that are not finite and positive"):
            read_layers(model, cache_file((out, inp), torch.full((out, 1), scale)))
    with pytest.raises(Int8CacheError, match="'backbone.nope' is not a float Linear layer"):
        read_layers(model, cache_file((out, inp), torch.ones(out, 1), "backbone.nope"))
    with pytest.raises(Int8CacheError, match=f"its counts decide {stack_layers + 1} layers, this model's transformer "
                                             f"stacks have {stack_layers}"):
        read_layers(model, cache_file((out, inp), torch.ones(out, 1), decided=stack_layers + 1))
    (tmp_path / "int8_layers.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Int8CacheError, match="corrupt or not safetensors"):
        read_layers(model, tmp_path / "int8_layers.safetensors")
    assert layer_kinds(model) == before
    counts = read_layers(model, cache_file((out, inp), torch.ones(out, 1)))
    assert counts["converted"] == 2 and all(isinstance(model.get_submodule(n), QuantizedLinear) for n in (first, name))


def test_a_sealed_file_that_does_not_fit_is_named_and_made_again(int8_cache, tiny_checkpoint, monkeypatch, caplog):
    first = int8_policy(tiny_checkpoint)
    folder = next(int8_cache.glob(f"*/{INT8_CACHE_FILE}")).parent
    name = "backbone.eagle_model.language_model.model.layers.0.mlp.down_proj"
    tensors = {f"{name}.levels": torch.zeros(3, 3, dtype=torch.int8), f"{name}.scale": torch.ones(3, 1)}
    meta = {"counts": {"converted": 1}, "layers": {name: {"mode": "int8"}}}
    write_streamed(folder / INT8_CACHE_FILE, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()},
                   tensors.__getitem__, {"gr00t_fast.int8": json.dumps(meta)})
    seal(folder)  # as if this cache had written it
    with monkeypatch.context() as m:  # it cannot be removed: named once, not read again as it is, quantized
        unlink = Path.unlink
        m.setattr(Path, "unlink", lambda path, missing_ok=False: (_ for _ in ()).throw(PermissionError(
            errno.EACCES, "Permission denied")) if path.name == INT8_CACHE_FILE else unlink(path, missing_ok))
        kept = int8_policy(tiny_checkpoint)
    assert caplog.text.count("int8 cache: ") == 1 and "; not read" not in caplog.text
    assert kept.model.precision.quantization["cache"] == "not saved (permission denied)"
    caplog.clear()
    again = int8_policy(tiny_checkpoint)
    assert "int8 cache: " in caplog.text and "; quantizing again" in caplog.text
    assert again.model.precision.quantization["cache"].startswith("saved to")
    assert torch.equal(actions(again), actions(first)) and torch.equal(actions(kept), actions(first))


def test_a_cache_that_fails_to_save_or_seal_keeps_the_layers_it_made_or_read(int8_cache, tiny_checkpoint, monkeypatch,
                                                                              caplog):
    made = []
    quantize_linears = pytorch.quantize_linears
    monkeypatch.setattr(pytorch, "quantize_linears", lambda *a, **k: made.append(1) or quantize_linears(*a, **k))
    full = OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(int8_cache_module, "save_layers", lambda *a: (_ for _ in ()).throw(full))
        unsaved = int8_policy(tiny_checkpoint)
    assert len(made) == 1 and unsaved.model.precision.quantization["cache"] == "not saved (no space left on device)"
    assert "not written (no space left on device)" in caplog.text
    saved = int8_policy(tiny_checkpoint)
    assert len(made) == 2 and torch.equal(actions(saved), actions(unsaved))
    with monkeypatch.context() as m:  # the read's seal cannot be rewritten: the layers read are kept
        m.setattr("gr00t_fast.runtime.cache.seal", lambda folder: (_ for _ in ()).throw(full))
        read = int8_policy(tiny_checkpoint)
    assert len(made) == 2 and read.model.precision.quantization["cache"].startswith("read from")
    assert torch.equal(actions(read), actions(saved))


def test_an_unwritable_cache_is_off_for_the_load_before_the_checkpoint_is_hashed(int8_cache, tiny_checkpoint,
                                                                                   monkeypatch, tmp_path, caplog):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "a_file" / "cache"))
    monkeypatch.setattr("gr00t_fast.export.artifacts.checkpoint_fingerprint", lambda path: 1 / 0)
    policy = int8_policy(tiny_checkpoint)
    assert "cache" not in policy.model.precision.quantization
    assert f"int8 cache off for this load: {tmp_path / 'a_file' / 'cache'} cannot be written (not a directory)" \
        in caplog.text
    assert policy.model.precision.quantization["converted"] > 0 and is_complete(policy.model)


def test_a_bad_cache_switch_is_refused_before_the_weights(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv(INT8_CACHE_ENV, "yes")
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: 1 / 0)
    with pytest.raises(ValueError, match=f"{INT8_CACHE_ENV}='yes': expected 1 .* or 0"):
        int8_policy(tiny_checkpoint)


def test_the_layers_are_written_one_at_a_time_and_read_back_by_safetensors(tmp_path):
    layout = {f"t{i}": (torch.int8 if i % 2 else torch.float32, (i + 1, 3)) for i in range(5)}
    made: list[StorageWeakRef] = []

    def tensor(name: str) -> torch.Tensor:
        gc.collect()
        assert all(ref.expired() for ref in made)  # the ones written before are gone
        dtype, shape = layout[name]
        value = torch.arange(shape[0] * shape[1]).reshape(shape).to(dtype)
        made.append(StorageWeakRef(value.untyped_storage()))
        return value

    write_streamed(tmp_path / "x.safetensors", layout, tensor, {"a": "b"})
    back = load_file(tmp_path / "x.safetensors")
    assert list(back) == list(layout) and all(back[k].dtype == d and back[k].shape == s for k, (d, s) in layout.items())
    assert torch.equal(back["t3"], torch.arange(12).reshape(4, 3).to(torch.int8))
    with pytest.raises(ValueError, match="t0: made torch.float32 \\[2, 2\\], declared torch.float32 \\[1, 3\\]"):
        write_streamed(tmp_path / "y.safetensors", layout, lambda name: torch.zeros(2, 2))


@pytest.fixture
def fbgemm(monkeypatch):
    """int8 on FBGEMM, which packs its own copy of every layer's levels: what a layer holds is not what was read."""
    monkeypatch.setattr(quantize, "int8_units", lambda: None)
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")


def test_a_save_unpacks_one_layer_at_a_time(int8_cache, tiny_checkpoint, fbgemm, monkeypatch):
    unpacked: list[StorageWeakRef] = []
    levels = QuantizedLinear.levels

    def one_at_a_time(layer):
        assert all(ref.expired() for ref in unpacked)  # the layers written before are freed by refcount alone
        out = levels(layer)
        unpacked.extend(StorageWeakRef(t.untyped_storage()) for t in out)
        return out

    monkeypatch.setattr(QuantizedLinear, "levels", one_at_a_time)
    policy = int8_policy(tiny_checkpoint)
    assert policy.model.precision.quantization["cache"].startswith("saved to")
    assert len(unpacked) == 2 * policy.model.precision.quantization["converted"] > 0


def test_a_read_frees_each_layers_levels_as_its_own_copy_is_packed(int8_cache, tiny_checkpoint, fbgemm, monkeypatch):
    int8_policy(tiny_checkpoint)
    read: dict[str, StorageWeakRef] = {}
    checked, replace_layers = int8_cache_module._checked, int8_cache_module.replace_layers

    def weakly(f, linears):
        layers, counts, stored = checked(f, linears)
        read.update({name: StorageWeakRef(levels.untyped_storage()) for name, (levels, _, _) in stored.items()})
        return layers, counts, stored

    held_after = []

    def replaced(model, names, convert):
        count = replace_layers(model, names, convert)
        held_after.append(sum(not ref.expired() for ref in read.values()))
        return count

    monkeypatch.setattr(int8_cache_module, "_checked", weakly)
    monkeypatch.setattr(int8_cache_module, "replace_layers", replaced)
    policy = int8_policy(tiny_checkpoint)
    assert policy.model.precision.quantization["cache"].startswith("read from")
    converted = len(read)
    assert converted == policy.model.precision.quantization["converted"] > 1
    assert held_after == sorted(held_after, reverse=True) and held_after[0] == converted - 1 and held_after[-1] == 0


def test_stored_levels_are_held_as_they_are_not_smoothed_or_fitted_again():
    layer = torch.nn.Linear(16, 8)
    stored = (torch.ones(8, 16, dtype=torch.int8), torch.ones(8, 1), None)
    with pytest.raises(ValueError, match="stored levels are held as they are; smooth and rows would be unused"):
        QuantizedLinear(layer, "int8", "onednn", smooth=torch.ones(16), stored=stored)
    with pytest.raises(ValueError, match="stored levels are held as they are"):
        QuantizedLinear(layer, "int8", "onednn", rows=torch.ones(4, 16), stored=stored)


READ_ONLY_LOAD = """
import json, sys
import torch
from gr00t_fast.model import quantize
quantize.int8_units, quantize.bf16_units = lambda: "AVX512-VNNI", lambda: None  # as the tests' fixtures set them
quantize.CPU_INT8_MIN_WIDTH = quantize.CPU_INT8_MIN_MACS = 0
from gr00t_fast.loading import load_policy
from gr00t_fast.model.inputs import example_inputs
torch.set_num_threads(int(sys.argv[2]))
policy = load_policy(sys.argv[1], device="cpu", dtype="float32", quantize="int8", warmup=False,
                     calibration=sys.argv[3] if len(sys.argv) > 3 else None)
inputs, noise = example_inputs(policy.model.config)
print(json.dumps({"cache": policy.model.precision.quantization.get("cache"),
                  "actions": policy.backend(inputs, noise, 4).numpy().tobytes().hex()}))
"""


READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'  # in a private mount namespace


def mount_namespace(probe: Path) -> list[str] | None:
    """The `unshare` command that mounts `probe` read-only in a namespace of its own: `-m` (root's mount rights) or
    `-rm` (a user namespace too: any user where user namespaces are allowed); None where neither can."""
    for flags in (["-m"], ["-rm"]) if shutil.which("unshare") else ():
        if subprocess.run(["unshare", *flags, "sh", "-c", READ_ONLY, str(probe), "true"],
                          capture_output=True).returncode == 0:
            return ["unshare", *flags]
    return None


def read_only_load(unshare: list[str], cache: Path, checkpoint: Path,
                   *calibration: Path) -> subprocess.CompletedProcess:
    """A `--quantize int8` load in its own process with `cache` mounted read-only (`unshare`: `mount_namespace`), its
    tiny layers int8 on oneDNN as the tests' fixtures make them (`READ_ONLY_LOAD`)."""
    return subprocess.run([*unshare, "sh", "-c", READ_ONLY, str(cache), sys.executable, "-c", READ_ONLY_LOAD,
                           str(checkpoint), str(torch.get_num_threads()), *map(str, calibration)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GR00T_FAST_CACHE": str(cache)})


def test_a_read_only_cache_is_read_as_it_is_where_its_file_is_the_one_sealed(int8_cache, tiny_checkpoint, tmp_path,
                                                                                observations_file):
    (tmp_path / "probe").mkdir()
    unshare = mount_namespace(tmp_path / "probe")
    if unshare is None:
        pytest.skip("a read-only mount needs unshare and a mount namespace of its own (root's, or a user namespace)")
    first = int8_policy(tiny_checkpoint)
    file = next(int8_cache.glob(f"*/{INT8_CACHE_FILE}"))
    read = read_only_load(unshare, int8_cache.parent, tiny_checkpoint)
    assert read.returncode == 0, read.stderr[-2000:]
    out = json.loads(read.stdout.splitlines()[-1])
    assert out["cache"] == f"read from {file.parent} (read-only file system: read as it is)"
    assert bytes.fromhex(out["actions"]) == actions(first).numpy().tobytes()
    data = bytearray(file.read_bytes())
    data[-1] ^= 1  # not the file the seal records: quantized again, not read, nothing written
    file.write_bytes(bytes(data))
    again = read_only_load(unshare, int8_cache.parent, tiny_checkpoint)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1])["cache"] == "not saved (read-only file system)"
    assert f"int8 cache: {file.parent}: {INT8_CACHE_FILE} is not the file this cache wrote" in again.stderr
    assert "; not read" in again.stderr and file.read_bytes() == bytes(data)
    other = read_only_load(unshare, int8_cache.parent, tiny_checkpoint, observations_file)  # another key: none
    assert other.returncode == 0, other.stderr[-2000:]
    assert json.loads(other.stdout.splitlines()[-1])["cache"] is None
    assert f"int8 cache off for this load: {int8_cache.parent} cannot be written (not writable)" \
        in other.stderr


def test_a_cache_file_this_process_may_not_read_is_named_and_not_read(int8_cache, tiny_checkpoint, monkeypatch,
                                                                      caplog):
    first = int8_policy(tiny_checkpoint)
    folder = next(int8_cache.glob(f"*/{INT8_CACHE_FILE}")).parent
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    before = layer_kinds(model)
    denied = PermissionError(errno.EACCES, "Permission denied")
    with monkeypatch.context() as m:
        m.setattr(int8_cache_module, "unsealed", lambda folder: (_ for _ in ()).throw(denied))
        assert int8_cache_module.read_as_it_is(model, folder) is None and layer_kinds(model) == before
    assert f"int8 cache: {folder}: it cannot be read (permission denied); not read" in caplog.text
    counts = int8_cache_module.read_as_it_is(model, folder)  # readable again: read
    assert counts["converted"] == first.model.precision.quantization["converted"]



def test_an_unwritable_cache_is_keyed_only_where_it_holds_this_keys_file(int8_cache, tiny_checkpoint, monkeypatch):
    """In-process twin of the read-only mount's key check, for machines where no mount namespace can be made."""
    int8_policy(tiny_checkpoint)
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    saved = pytorch.calibration_inputs(model.config, pytorch.SYNTHETIC_CALLS)  # the load's synthetic scenes
    folder = int8_cache_folder(model, Artifacts(tiny_checkpoint), saved)
    assert (folder / INT8_CACHE_FILE).is_file()
    monkeypatch.setattr(pytorch.os, "access", lambda path, mode: False)  # as a read-only file system answers
    assert int8_cache_folder(model, Artifacts(tiny_checkpoint), saved) == folder
    monkeypatch.setattr("gr00t_fast.export.artifacts.checkpoint_fingerprint", lambda path: 1 / 0)
    assert int8_cache_folder(model, Artifacts(tiny_checkpoint), [example_inputs(model.config)]) is None
