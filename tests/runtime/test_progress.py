"""Progress for long work: the compiled backend's first call per input shape, demo-task fitting, checkpoint
writing and ONNX export show a tqdm line on stderr; nothing is shown when progress is off."""

import io
import shutil
import threading

import pytest
import torch

from tqdm import tqdm

from gr00t_fast.runtime.progress import redrawn, ticking


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    from gr00t_fast.model import load_model

    return load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)


def test_ticking_redraws_until_the_block_ends(capsys):
    redrawn = threading.Event()
    with ticking("compiling", interval_s=0.01):
        redrawn.wait(0.2)  # give the redraw thread a few turns; the line is there from the start either way
    err = capsys.readouterr().err
    assert "compiling: 00:0" in err
    assert not any(t.name == "gr00t-progress" for t in threading.enumerate())  # the redraw thread has ended
    with ticking("silent", enabled=False):
        pass
    assert capsys.readouterr().err == ""


class Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_a_log_file_is_not_redrawn_every_second(terminal):
    """On a terminal the elapsed time moves every `interval_s`; into a file or pipe it is drawn at the start and
    the end (and every LOG_INTERVAL_S), not once a second into a log."""
    stream = Stream(terminal)
    with redrawn(tqdm(desc="compiling", bar_format="{desc}: {elapsed}", file=stream), interval_s=0.01):
        threading.Event().wait(0.3)
    draws = stream.getvalue().count("compiling:")
    assert draws > 5 if terminal else draws <= 3, stream.getvalue()


@torch.inference_mode()
def test_compiled_backend_shows_its_first_call_per_shape(tiny_model, capsys):
    from gr00t_fast.backends import make_backend
    from gr00t_fast.model.inputs import example_inputs

    compiled = make_backend("compile", tiny_model, backend="eager")  # dynamo only: the cheapest real compile
    inputs, noise = example_inputs(tiny_model.config)
    compiled(inputs, noise, 2)
    assert "torch.compile: compiling for batch 1, " in capsys.readouterr().err
    compiled(inputs, noise, 2)  # compiled already: no line
    assert "torch.compile" not in capsys.readouterr().err


def test_demo_task_fitting_and_checkpoint_writing_show_progress(tiny_checkpoint, tmp_path, capsys):
    from gr00t_fast.dev.demo_task import fit_reach
    from gr00t_fast.model.random_checkpoint import write_checkpoint

    fit_reach(shutil.copytree(tiny_checkpoint, tmp_path / "fit"), steps=3, batch=4)
    err = capsys.readouterr().err
    assert "fitting the reach task" in err and "3/3" in err and "loss=" in err
    write_checkpoint(tmp_path / "written", size="tiny")
    err = capsys.readouterr().err
    assert "writing tiny checkpoint" in err and "saving model-00001-of-" in err
