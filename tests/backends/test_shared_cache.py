"""One cache, several processes (issue 58): two real processes loading the same fresh checkpoint at once both load
it, with the same actions, the second waiting for the first one's export or compile instead of removing or making
again what it is writing (`runtime.cache.locked`, `runtime.cache.sealed`)."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from processes import default_stop_signals

WAITING = "waiting for another process writing"  # `runtime.cache.locked`'s line while another process holds it

HOLD_SEALED = """
import sys, time
from pathlib import Path
from gr00t_fast.runtime.cache import sealed
folder, ready, go = map(Path, sys.argv[1:])
with sealed(folder):  # a compile in progress: half of what it writes is there
    (folder / "compiled").mkdir()
    (folder / "compiled" / "first.blob").write_bytes(b"half")
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    (folder / "compiled" / "second.blob").write_bytes(b"rest")
"""

OPEN_SEALED = """
import sys
from pathlib import Path
from gr00t_fast.runtime.cache import sealed
folder = Path(sys.argv[1])
with sealed(folder):
    print(sorted(p.name for p in (folder / "compiled").iterdir()))
"""

LOAD = """
import sys, time
from pathlib import Path
import numpy as np
from gr00t_fast.loading import load_policy
checkpoint, backend, ready, go, out = sys.argv[1:]
Path(ready).touch()  # imported: both start loading at the same moment
while not Path(go).exists():
    time.sleep(0.005)
policy = load_policy(checkpoint, device="cpu", backend=backend, warmup=False)
noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
np.savez(out, **policy.get_action(policy.dummy_observation(), noise=noise))
"""

HOLD_LOCK = """
import sys, time
from pathlib import Path
from gr00t_fast.runtime.cache import cache_dir, locked
ready, go = map(Path, sys.argv[1:])
with locked(cache_dir() / "inductor"):
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
"""

COMPILE = """
import sys, torch
from gr00t_fast.backends import make_backend
from gr00t_fast.model import load_model
from gr00t_fast.model.inputs import example_inputs
model = load_model(sys.argv[1], device="cpu", dtype=torch.float32)
inputs, noise = example_inputs(model.config)
with torch.inference_mode():
    make_backend("compile", model)(inputs, noise, 2)
"""


class Child:
    """`python -c code args` as a real process, its stdout and stderr in files read while it runs."""

    def __init__(self, code: str, *args, folder: Path, name: str, env: dict[str, str]):
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=out, stderr=err,
                                            env=env, preexec_fn=default_stop_signals)

    def stderr(self) -> str:
        return self.err.read_text()

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self.process.kill()
        return code, self.out.read_text(), self.stderr()


def wait_until(condition: Callable[[], bool], child: Child, what: str) -> None:
    """Until `condition()` holds; the test fails when `child` ends first (or after a generous safety limit)."""
    deadline = time.monotonic() + 240
    while not condition():
        assert child.process.poll() is None, f"ended before {what}: {child.stderr()}"
        assert time.monotonic() < deadline, f"no {what}: {child.stderr()}"
        time.sleep(0.01)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The children's environment: one fresh gr00t-fast cache (Inductor's beside the rest)."""
    variables = {**os.environ, "GR00T_FAST_CACHE": str(tmp_path / "cache")}
    variables.pop("TORCHINDUCTOR_CACHE_DIR", None)
    return variables


def test_a_cache_folder_being_written_is_left_whole_until_its_writer_is_done(tmp_path, env):
    """The repro: a process opening a cache folder while another one's compile was writing into it found a file not
    yet recorded, took it for a stranger's and removed the folder under the writer. Now it waits, saying so, and then
    finds every file the writer recorded."""
    from gr00t_fast.runtime.cache import unsealed

    folder, ready, go = tmp_path / "cache" / "openvino" / "graphs-key", tmp_path / "ready", tmp_path / "go"
    writer = Child(HOLD_SEALED, folder, ready, go, folder=tmp_path, name="writer", env=env)
    wait_until(ready.exists, writer, "the writer's first file")
    reader = Child(OPEN_SEALED, folder, folder=tmp_path, name="reader", env=env)
    wait_until(lambda: WAITING in reader.stderr(), reader, "a wait for the writer")
    assert (folder / "compiled" / "first.blob").read_bytes() == b"half" and reader.process.poll() is None
    go.touch()
    assert writer.finish()[0] == 0
    code, out, err = reader.finish()
    assert code == 0 and out.strip() == "['first.blob', 'second.blob']", err
    assert "made again" not in err and unsealed(folder) is None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_two_processes_load_one_fresh_checkpoint_at_once(tiny_checkpoint, backend, tmp_path, env):
    """Two processes load the same checkpoint, never loaded before, at the same moment: both succeed with the same
    actions; the graphs are exported once (the second process waits for them), and no cache folder is emptied as
    another process's (openvino's compiled models)."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    ready, go = [tmp_path / f"ready{i}" for i in range(2)], tmp_path / "go"
    children = [Child(LOAD, tiny_checkpoint, backend, ready[i], go, tmp_path / f"actions{i}.npz", folder=tmp_path,
                      name=f"load{i}", env=env) for i in range(2)]
    for child, flag in zip(children, ready):
        wait_until(flag.exists, child, "its imports")
    go.touch()
    done = [child.finish() for child in children]
    assert [code for code, _, _ in done] == [0, 0], [err for _, _, err in done]
    errors = [err for _, _, err in done]
    assert sum("exporting ONNX" in err for err in errors) == 1, errors
    assert not any("made again" in err or "Traceback" in err for err in errors), errors
    first, second = (np.load(tmp_path / f"actions{i}.npz") for i in range(2))
    assert set(first.files) == set(second.files)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)  # the same graphs on the same input


@pytest.mark.slow
def test_a_shape_is_compiled_into_inductors_cache_by_one_process_at_a_time(tiny_checkpoint, tmp_path, env):
    """The compile backend's first call of a shape writes Inductor's cache (`cache_dir()/inductor`): while another
    process holds that folder, it waits, saying so, before compiling anything."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    holder = Child(HOLD_LOCK, ready, go, folder=tmp_path, name="holder", env=env)
    wait_until(ready.exists, holder, "the lock")
    compiler = Child(COMPILE, tiny_checkpoint, folder=tmp_path, name="compiler", env=env)
    try:
        wait_until(lambda: WAITING in compiler.stderr() or "torch.compile: compiling" in compiler.stderr(), compiler,
                   "a wait or a compile")
        assert WAITING in compiler.stderr() and "torch.compile: compiling" not in compiler.stderr(), \
            compiler.stderr()
        assert f"{Path(env['GR00T_FAST_CACHE']) / 'inductor'}" in compiler.stderr()
    finally:
        compiler.process.kill()
        go.touch()
        assert holder.finish()[0] == 0
