"""Ctrl-C while a command loads its model: exit 130 and one line, never an abort from a torch call cut off at
shutdown (the load runs on the torch thread, `gr00t_fast.runtime.torch_thread.exit_if_busy`)."""

from __future__ import annotations

import importlib.abc
import importlib.util
from pathlib import Path

import pytest


from processes import assert_interrupted_while_loading


@pytest.fixture(scope="module")
def small_checkpoint() -> Path:
    """The "small" random-weight checkpoint (cached): loading it takes long enough to be interrupted."""
    from gr00t_fast.model.random_checkpoint import cached_checkpoint

    return cached_checkpoint("bench_small", "small")


INTERRUPTED_COMMANDS = {
    "serve": ["serve", "--model-path", "{ckpt}", "--port", "0", "--device", "cpu"],
    "run": ["run", "--model_path={ckpt}", "--robot.type=so100_sim", "--device=cpu", "--max_steps=1"],
}


@pytest.mark.parametrize("command", list(INTERRUPTED_COMMANDS))
@pytest.mark.slow
def test_ctrl_c_while_loading_ends_with_one_line(command, small_checkpoint):
    """A real process, interrupted once it says that it loads (the line comes from the load itself, so the load
    runs when the signal lands): exit code 130 and one line, no abort from a torch call cut off at shutdown."""
    if command == "run" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("the simulated robot needs MuJoCo")
    assert_interrupted_while_loading([arg.format(ckpt=small_checkpoint) for arg in INTERRUPTED_COMMANDS[command]],
                                     f"gr00t-fast {command}")


def test_a_ctrl_c_a_library_caught_is_raised_again_at_the_next_check(python_sigint):
    """`RememberedInterrupt`: SIGINT raises KeyboardInterrupt at once; where something caught it (import probes catch
    the ImportError an interrupted pybind11 extension raises), `check()` raises it again; leaving gives the previous
    handler back, without a signal `check()` passes, and an ignored SIGINT stays ignored."""
    import signal

    from gr00t_fast.runtime.interrupt import RememberedInterrupt

    before, caught = signal.getsignal(signal.SIGINT), []
    with RememberedInterrupt() as interrupt:
        interrupt.check()
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            caught.append(True)  # what the library does
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert caught and signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # started with SIGINT ignored (`cmd &` from a script): it stays so
    try:
        with RememberedInterrupt():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
