"""Shared test fixtures: paths to ../shared and tiny checkpoints built once per session."""

from pathlib import Path

import pytest

from shared_data import shared_path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny checkpoint in the official layout (built once per test session)."""
    from gr00t_fast.dev.make_checkpoint import write_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    write_checkpoint(out, size="tiny", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def golden_checkpoint() -> Path:
    """NVIDIA's own tiny N1.5 checkpoint from ../shared/golden_public (skips when absent)."""
    return shared_path("golden_public", "tiny_n15")
