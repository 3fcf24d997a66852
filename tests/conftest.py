"""Shared test fixtures: paths to ../shared and tiny checkpoints built once per session.

`dtype="auto"` (the default) is pinned to float32 for the whole suite and the processes it starts: on a CPU with
bf16 units it picks bf16 for the larger checkpoints, and the suite compares actions exactly
(tests/model/test_precision.py tests the choice itself). The torch backend's int8 transformer blocks stay eager
(`GR00T_FAST_COMPILE_BLOCKS=0`): compiled, every int8 load would spend tens of seconds in Inductor, and int8 levels
a float rounding apart flip where the suite compares int8 runs; tests/backends/test_regional.py turns them on. What
gr00t-fast caches (demo checkpoints, exported graphs) goes to a folder of this test session, never the user's
`~/.cache/gr00t_fast`; int8 loads do not cache their layers (`GR00T_FAST_INT8_CACHE=0`: a test's monkeypatched rules
would meet another's layers), tests/model/test_int8_cache.py turns it on."""

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

# Under pytest-xdist each worker runs on a CPU of its own (gw0 on the first usable one, gw1 on the next), and so do
# the processes it starts: gr00t-fast's adaptive thread team (`runtime.threads`) would otherwise follow the other
# worker's load from call to call, and the tests that compare two runs bit for bit would see other float
# reductions. Set before anything reads the affinity (`cpu_threads` does on import).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _CPUS = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_CPUS[int(_WORKER[2:]) % len(_CPUS)]})

import pytest

from gr00t_fast.backends.regional import COMPILE_BLOCKS_ENV
from gr00t_fast.model.int8_cache import INT8_CACHE_ENV
from gr00t_fast.model.precision import AUTO_DTYPE_ENV
from shared_data import shared_path

os.environ[AUTO_DTYPE_ENV] = "float32"
os.environ[COMPILE_BLOCKS_ENV] = "0"
os.environ["GR00T_FAST_CACHE"] = tempfile.mkdtemp(prefix="gr00t_fast_test_cache_")
os.environ[INT8_CACHE_ENV] = "0"
atexit.register(shutil.rmtree, os.environ["GR00T_FAST_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny checkpoint in the official layout (built once per test session)."""
    from gr00t_fast.model.random_checkpoint import write_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    write_checkpoint(out, size="tiny", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def outlier_checkpoint(tmp_path_factory) -> Path:
    """The tiny checkpoint with `make-checkpoint --outliers`' channels (`gr00t_fast.model.outliers`)."""
    from gr00t_fast.model.random_checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("outliers") / "tiny", "tiny", 0, progress=False, outliers=True)


@pytest.fixture(scope="session")
def observations_file(tmp_path_factory):
    """12 observations of the tiny checkpoint's SO-100, as `--calibration` reads them."""
    import numpy as np

    rng, n = np.random.default_rng(1), 12
    path = tmp_path_factory.mktemp("calibration") / "obs.npz"
    np.savez(path, **{"video.webcam": rng.integers(0, 256, (n, 1, 480, 640, 3), dtype=np.uint8),
                      "state.single_arm": rng.uniform(-50, 50, (n, 1, 5)),
                      "state.gripper": rng.uniform(0, 50, (n, 1, 1)),
                      "annotation.human.task_description": np.array([f"task {i}" for i in range(n)])})
    return path


@pytest.fixture(scope="session")
def trained_stand_in(tmp_path_factory) -> Path:
    """A tiny checkpoint without make-checkpoint's random-weight mark: it stands in for a trained one where a test
    drives a (simulated) real robot, which refuses marked checkpoints."""
    from gr00t_fast.model.random_checkpoint import write_checkpoint
    from gr00t_fast.model.provenance import PROVENANCE_FILE

    out = tmp_path_factory.mktemp("ckpt") / "trained_stand_in"
    write_checkpoint(out, size="tiny", seed=0, progress=False)
    (out / PROVENANCE_FILE).unlink()
    return out


@pytest.fixture(scope="session")
def golden_checkpoint() -> Path:
    """NVIDIA's own tiny N1.5 checkpoint from ../shared/golden_public (skips when absent)."""
    return shared_path("golden_public", "tiny_n15")


@pytest.fixture(autouse=True)
def onednn_int8(monkeypatch):
    """int8 runs oneDNN's engine in every test whatever the CPU (`gr00t_fast.model.quantize.int8_engine` reads
    VNNI): on prepacked weights where the CPU has VNNI or AMX (`onednn_packs` reads the CPU itself), else
    `torch._int_mm`, exact on any CPU and only slow without VNNI (at the tests' sizes, nothing); it is the engine the
    tests' expectations are written for. The layers int8 keeps out stay in the model's dtype at the 5%
    bound as on a CPU without bf16 units (`kept_layers`), whatever this CPU has. The tests of FBGEMM, of the engine
    rule and of the layers kept in bf16 set the units they test."""
    monkeypatch.setattr("gr00t_fast.model.quantize.int8_units", lambda: "AVX512-VNNI")
    monkeypatch.setattr("gr00t_fast.model.quantize.bf16_units", lambda: None)
    monkeypatch.delenv("GR00T_FAST_INT8_ENGINE", raising=False)


@pytest.fixture
def int8_prepacked(monkeypatch):
    """oneDNN's int8 layers prepacked at every size (`gr00t_fast.model.quantize.ONEDNN_PACK_MIN_WEIGHT`: the tiny
    checkpoint's are all below it); skipped on a CPU without VNNI or AMX, whose oneDNN u8s8 GEMM saturates."""
    from gr00t_fast.model import quantize

    if not quantize.onednn_packs(quantize.ONEDNN_PACK_MIN_WEIGHT, 1):
        pytest.skip("oneDNN's prepacked u8s8 GEMM is exact only with VNNI or AMX (16-bit byte-pair sums saturate "
                    "without): this CPU's int8 layers run torch._int_mm")
    monkeypatch.setattr(quantize, "ONEDNN_PACK_MIN_WEIGHT", 0)


@pytest.fixture
def onednn_packed_anywhere(monkeypatch):
    """oneDNN's int8 layers prepacked at every size on any CPU: without VNNI or AMX its u8s8 sums saturate (not the
    exact sums of `int8_prepacked`), the same at every call, for tests of what a packed layer holds and gives back."""
    monkeypatch.setattr("gr00t_fast.model.quantize.onednn_packs", lambda in_features, out_features: True)


@pytest.fixture
def int8_at_every_size(monkeypatch):
    """int8 converts the tiny checkpoint's layers on a CPU too (the size rule of `gr00t_fast.model.quantize` keeps
    them all float32 there): for tests of what int8 itself does."""
    monkeypatch.setattr("gr00t_fast.model.quantize.CPU_INT8_MIN_WIDTH", 0)
    monkeypatch.setattr("gr00t_fast.model.quantize.CPU_INT8_MIN_MACS", 0)


@pytest.fixture
def python_sigint():
    """SIGINT handled by Python's own handler during the test, as in a command started from a terminal: a test run
    started in the background inherits SIGINT ignored, and Python then leaves it so."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
