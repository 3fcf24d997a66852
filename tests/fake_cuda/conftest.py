"""The fake-CUDA lane: the full-size N1.5 on fake CUDA tensors (`gr00t_fast.dev.fake_cuda`). Needs a CUDA build of
torch (no GPU): `.ci/fake_cuda_env.sh` builds that environment, `.ci/run` runs this folder in it."""

from pathlib import Path

import pytest
import torch

from gr00t_fast.dev.fake_cuda import FakeCuda
from gr00t_fast.dev.gpu_trace import config_folder, fake_policy
from gr00t_fast.runtime.torch_thread import run_on_torch_thread

CPU_BUILD = torch.version.cuda is None
WHY_SKIPPED = (f"torch {torch.__version__} is a CPU-only build: the fake-CUDA lane needs a CUDA build "
               "(bash .ci/fake_cuda_env.sh)")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def on_torch_thread(fn, *args, **kwargs):
    """`fn` on the policy's torch thread, where the fake CUDA mode is active (dispatch modes are per thread)."""
    return run_on_torch_thread(fn, *args, **kwargs)


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    return config_folder(tmp_path_factory.mktemp("full") / "n15_full")


_ACTIVE: list[FakeCuda] = []  # the fake CUDA mode while this folder's tests run


@pytest.fixture(scope="session")
def cuda():
    mode = FakeCuda()
    on_torch_thread(mode.__enter__)
    _ACTIVE.append(mode)
    yield mode
    leave_fake_cuda()


def leave_fake_cuda() -> None:
    while _ACTIVE:
        on_torch_thread(_ACTIVE.pop().__exit__, None, None, None)


def pytest_runtest_teardown(item, nextitem):
    """The fake CUDA mode ends with this folder's last test, not with the session: left active on the torch thread
    (the suite on Python 3.12 runs this folder too), it made that thread's later ONNX exports trace broken graphs."""
    if nextitem is None or Path(str(nextitem.fspath)).parent != Path(__file__).parent:
        leave_fake_cuda()


@pytest.fixture(scope="session")
def policies(cuda, folder):
    """policy(dtype, backend="torch", quantize=None, data_config="so100", **options), each built once."""
    built = {}

    def policy(dtype, backend="torch", quantize=None, data_config="so100", **options):
        key = (dtype, backend, quantize, data_config, tuple(sorted(options.items())))
        if key not in built:
            built[key] = on_torch_thread(fake_policy, folder, dtype, backend, quantize, data_config, **options)
        return built[key]

    return policy
