"""`gr00t-fast bench gpu --plan` on the CPU build of torch: one line saying it needs a CUDA build, exit 2, before any
checkpoint is generated (tests/fake_cuda runs the plan itself)."""

import pytest
import torch

from gr00t_fast.dev.bench import cli


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build traces the plan (tests/fake_cuda)")
def test_plan_needs_a_cuda_build_of_torch(capsys, tmp_path):
    assert cli.main(["gpu", "--plan", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--plan traces on fake CUDA: it needs a CUDA build of torch" in err
    assert not any(tmp_path.iterdir())
