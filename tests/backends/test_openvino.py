"""The `openvino` backend on the real OpenVINO runtime (CPU): bf16 and INT8 weights (NNCF) within their measured
bounds (NVIDIA's golden cases in f32: tests/policy/test_policy_golden.py), batches, the compiled-model cache keyed by weights / version / device /
precision, the precision rule, and one line for what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_fast.backends.openvino import describe, device_available, openvino_options
from gr00t_fast.loading import load_policy
from gr00t_fast.model.rtc import RtcRequest

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def policies(tiny_checkpoint):
    cache = {}

    def get(**options):
        key = tuple(sorted(options.items()))
        if key not in cache:
            cache[key] = load_policy(tiny_checkpoint, device="cpu", warmup=False, **options)
        return cache[key]

    return get


def case(policy, seed: int = 0, batch: int | None = None):
    observation = policy.dummy_observation()
    rng = np.random.default_rng(seed)
    if batch:
        observation = {k: (v * batch if isinstance(v, list) else np.concatenate([v[None]] * batch)) for k, v in
                       observation.items()}
    noise = rng.standard_normal(((batch,) if batch else ()) + (16, 32)).astype(np.float32)
    return observation, noise


def largest_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_precisions_against_fp32_eager(policies):
    """f32 matches the fp32 eager path to float rounding; bf16 compute and INT8 weights move the tiny random
    checkpoint's actions by a few degrees at most (measured on an AVX512-BF16 CPU: 1.8 and 4.8 on its own statistics'
    ranges)."""
    reference = policies(dtype="float32")
    observation, noise = case(reference)
    want = reference.get_action(observation, noise=noise)
    f32 = policies(backend="openvino", dtype="float32")
    assert largest_difference(f32.get_action(observation, noise=noise), want) < 1e-3
    from gr00t_fast.model.quantize import bf16_flags

    for options in ({"dtype": "bfloat16"}, {"dtype": "float32", "quantize": "int8"}):
        policy = policies(backend="openvino", **options)
        difference = largest_difference(policy.get_action(observation, noise=noise), want)
        moved = "quantize" in options or bf16_flags() is not None  # OpenVINO computes f32 without bf16 units
        assert (0 < difference if moved else 0 <= difference) and difference < 10, (options, difference)
    assert "int8 weights (NNCF)" in policies(backend="openvino", dtype="float32", quantize="int8").backend.precision
    assert f32.timings["backend"] == {"name": "openvino", "reason": "openvino: asked for (the default is torch)"}


def test_a_batch_is_its_rows(policies):
    policy = policies(backend="openvino", dtype="float32")
    observation, noise = case(policy, seed=3, batch=3)
    batched = policy.get_action(observation, noise=noise)
    single, _ = case(policy, seed=3)
    for row in range(3):
        alone = policy.get_action(single, noise=noise[row])
        assert largest_difference({k: batched[k][row] for k in batched}, alone) < 1e-4


@pytest.mark.slow
def test_the_cache_is_keyed_by_graphs_versions_device_and_precision(tiny_checkpoint, tmp_path, monkeypatch):
    """The compiled models and INT8 weights live in a folder keyed by the digests of the graphs they were made
    from, gr00t-fast's and OpenVINO's versions, the device and the precision; a second load compresses nothing."""
    import hashlib

    import openvino

    from gr00t_fast import __version__
    from gr00t_fast.export.manifest import read_manifest

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    policy = load_policy(tiny_checkpoint, device="cpu", backend="openvino", dtype="float32", quantize="int8",
                         warmup=False)
    observation, noise = case(policy)
    first = policy.get_action(observation, noise=noise)  # compiles (and compresses) the sampler too
    folder = policy.backend.cache_dir
    assert folder.parent == tmp_path / "cache" / "openvino"
    files = read_manifest(policy.backend.onnx_dir)["files"]
    graphs = hashlib.sha256("".join(f"{n}:{e['sha256']};" for n, e in sorted(files.items())).encode()).hexdigest()
    assert folder.name == f"{graphs[:16]}-{__version__}-{openvino.__version__.split('-')[0]}-CPU-f32-int8"
    assert any((folder / "compiled").iterdir()) and len(list((folder / "int8").glob("llm-*/llm.xml"))) == 1
    import nncf

    monkeypatch.setattr(nncf, "compress_weights", lambda *a, **k: pytest.fail("compressed the weights again"))
    again = load_policy(tiny_checkpoint, device="cpu", backend="openvino", dtype="float32", quantize="int8",
                        warmup=False)
    assert largest_difference(again.get_action(observation, noise=noise), first) == 0


def test_the_precision_rule_and_what_it_refuses(policies, monkeypatch):
    from gr00t_fast.model.precision import AUTO_DTYPE_ENV

    big, tiny = 48_000_000, 1_300_000
    assert openvino_options("auto", None, big)["precision"] == "f32"  # the suite pins dtype auto to float32
    monkeypatch.delenv(AUTO_DTYPE_ENV)
    monkeypatch.setattr("gr00t_fast.model.precision.bf16_units", lambda: "AVX512-BF16")
    monkeypatch.setattr("gr00t_fast.model.precision.bf16_flags", lambda: "AVX512-BF16")
    assert openvino_options("auto", None, big) == {"precision": "bf16", "weights": None}
    assert openvino_options("auto", None, tiny)["precision"] == "f32"  # the rule's 10M floor, as for torch
    assert "below 10M calls are overhead-bound" in describe("f32", None, "auto", tiny)
    monkeypatch.setattr("gr00t_fast.model.precision.bf16_units", lambda: None)
    assert openvino_options("auto", "int8", big) == {"precision": "f32", "weights": "int8"}
    assert openvino_options("bfloat16", None, big)["precision"] == "bf16"
    with pytest.raises(ValueError, match="runs float32 or bfloat16"):
        openvino_options("float16", None, big)
    with pytest.raises(ValueError, match="compresses weights to int8"):
        openvino_options("auto", "fp8", big)
    monkeypatch.setenv(AUTO_DTYPE_ENV, "float16")  # a bad pin: one line, as for the torch backends
    with pytest.raises(ValueError, match="GR00T_FAST_AUTO_DTYPE='float16': expected one of float32, bfloat16"):
        openvino_options("auto", None, big)
    policy = policies(backend="openvino", dtype="float32")
    observation, _ = case(policy)
    with pytest.raises(ValueError, match="does not support real-time chunking"):
        policy.get_action(observation, rtc=RtcRequest("guided", np.zeros((16, 6), np.float32), inference_delay=2))


def test_an_unknown_device_is_one_line(tiny_checkpoint):
    with pytest.raises(ValueError, match="OpenVINO device 'NPU.7' is not available here; available: \\['CPU'"):
        load_policy(tiny_checkpoint, device="cpu", backend="openvino", openvino_device="NPU.7", warmup=False)


@pytest.mark.slow
def test_the_policy_holds_what_the_graphs_leave_out_alone(tiny_checkpoint, tmp_path, monkeypatch):
    """The PyTorch model of a graph backend holds the embedding lookup's table alone, the rest on the meta device;
    the precision's cost said at load comes from fp32 eager's answer stored with the cached export, the same line a
    float32 copy of the model computes where none is stored."""
    import torch

    from gr00t_fast.backends import openvino
    from gr00t_fast.model.graphs import GRAPH_HOST_TENSORS, REFERENCE_ACTIONS
    from gr00t_fast.model.loading import is_complete

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    first = load_policy(tiny_checkpoint, device="cpu", backend="openvino", dtype="bfloat16", warmup=False)
    assert not is_complete(first.model)
    assert {n for n, p in first.model.state_dict().items() if not p.is_meta} == set(GRAPH_HOST_TENSORS)
    assert (first.backend.onnx_dir / REFERENCE_ACTIONS).is_file()
    assert "actions vs fp32 eager: max" in first.precision.reason
    full_loads = []
    real_load = torch.nn.Module.load_state_dict

    def counted(module, state, strict=True, assign=False):
        full_loads.append(strict)
        return real_load(module, state, strict=strict, assign=assign)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", counted)
    stored = load_policy(tiny_checkpoint, device="cpu", backend="openvino", dtype="bfloat16", warmup=False)
    assert full_loads == [False] and stored.precision.reason == first.precision.reason
    monkeypatch.setattr(openvino, "REFERENCE_ACTIONS", "not_stored.npy")
    computed = load_policy(tiny_checkpoint, device="cpu", backend="openvino", dtype="bfloat16", warmup=False)
    assert full_loads == [False, False, True] and computed.precision.reason == first.precision.reason
    observation, noise = case(first)
    assert largest_difference(computed.get_action(observation, noise=noise),
                              first.get_action(observation, noise=noise)) == 0


def test_device_names_as_openvino_lists_them():
    listed = ["CPU", "GPU.0", "GPU.1", "NPU"]
    assert all(device_available(d, listed) for d in ("CPU", "GPU", "GPU.0", "GPU.1", "NPU", "AUTO", "AUTO:GPU,CPU",
                                                     "MULTI:GPU.0,GPU.1", "HETERO:GPU,CPU"))
    assert not any(device_available(d, listed) for d in ("GPU.2", "TPU", "gpu"))
    assert not device_available("GPU", ["CPU"])


@pytest.mark.slow
def test_the_compiled_cache_serves_only_the_files_it_wrote(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    """OpenVINO's compiled models and NNCF INT8 IR in the cache are recorded with their sha256 as they are written
    (`runtime.cache.seal`): a blob copied in from another cache folder, or an IR file changed in place, is named in
    one line and the folder compiled again before anything runs from it; the actions stay the first load's."""
    import logging
    import shutil

    from gr00t_fast.runtime.cache import unsealed

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path))
    load = lambda **options: load_policy(tiny_checkpoint, device="cpu", backend="openvino",  # noqa: E731
                                         warmup=False, **options)
    first = load(quantize="int8")
    cache = first.backend.cache_dir
    assert unsealed(cache) is None and list((cache / "compiled").iterdir()) and list((cache / "int8").rglob("*.bin"))
    observation, noise = case(first)
    want = first.get_action(observation, noise=noise)
    elsewhere = load().backend.cache_dir  # f32 weights: another cache folder
    shutil.copy(next((elsewhere / "compiled").iterdir()), cache / "compiled" / "from_elsewhere.blob")
    ir = next((cache / "int8").rglob("*.bin"))
    for tamper, line in ((lambda: None, "compiled/from_elsewhere.blob was not written by this cache"),
                         (lambda: ir.write_bytes(ir.read_bytes()[:-4] + b"\0\0\0\0"),
                          f"{ir.relative_to(cache).as_posix()} is not the file this cache wrote")):
        tamper()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gr00t_fast.backends.openvino"):
            again = load(quantize="int8")
        assert line in caplog.text and unsealed(cache) is None
        assert largest_difference(again.get_action(observation, noise=noise), want) == 0
