"""The workplace's shared data beside the checkout (../shared): NVIDIA's reference outputs and Eagle assets; the
reference outputs and the parameter table also travel with the tests (`tests/reference`, its README)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = REPO / "tests" / "reference"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, else under tests/reference, skipping the test cleanly where neither has it."""
    for root in (SHARED, REFERENCE):
        path = root.joinpath(*parts)
        if path.exists():
            return path
    pytest.skip(f"{SHARED.joinpath(*parts)} not available")
