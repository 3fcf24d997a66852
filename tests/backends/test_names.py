"""`gr00t_fast.backends.names`: the registry's names declared without torch, for `--backend` and `--help`."""

from gr00t_fast.backends import BACKENDS, DEFAULT_BACKEND
from gr00t_fast.backends import names
from gr00t_fast.policy.config import backend_names


def test_the_declared_names_are_the_registry_in_its_order():
    assert names.BACKEND_NAMES == tuple(BACKENDS) == backend_names()
    assert names.DEFAULT_BACKEND == DEFAULT_BACKEND and DEFAULT_BACKEND in BACKENDS
    assert names.CALIBRATING_BACKENDS == tuple(name for name, cls in BACKENDS.items() if cls.calibrates)
