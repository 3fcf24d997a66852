"""Torch CPU threads on a shared machine: the CPUs the process may use, and the team each inference runs with."""

import pytest
import torch

from gr00t_fast.runtime import threads as threads_module
from gr00t_fast.runtime.threads import CpuShare, ThreadPolicy, usable_cpus


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_usable_cpus_are_the_affinity_within_the_cgroup_quota(monkeypatch):
    import os

    assert usable_cpus() == sorted(os.sched_getaffinity(0))[: len(usable_cpus())]
    monkeypatch.setattr(threads_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads_module, "cgroup_quota", lambda: 1.5)  # a container limited to 1.5 CPUs
    assert usable_cpus() == [0]
    monkeypatch.setattr(threads_module, "cgroup_quota", lambda: None)
    assert usable_cpus() == [0, 1, 2, 3]


@pytest.mark.parametrize("others, team", [(0.0, 4), (0.4, 4), (0.5, 3), (1.0, 3), (1.5, 2), (3.9, 1), (7.0, 1)])
def test_auto_leaves_other_work_its_cpus(others, team, monkeypatch, restore_threads):
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: [0, 1, 2, 3])
    policy = ThreadPolicy()
    policy.configure(None)
    assert torch.get_num_threads() == 4 and policy.describe().startswith("threads auto (1-4 of 4 usable CPUs")
    monkeypatch.setattr(policy.share, "others", lambda: others)
    assert policy.adapt() == team == torch.get_num_threads()
    assert policy.as_dict() == {"mode": "auto", "usable_cpus": 4, "last": team,
                                "reason": f"other work used {others:.1f} of 4 CPUs"}
    monkeypatch.setattr(policy.share, "others", lambda: None)  # too soon to tell: the team stays
    assert policy.adapt() == team


def test_a_fixed_team_never_adapts(restore_threads):
    policy = ThreadPolicy()
    policy.configure(1)
    assert policy.share is None and policy.adapt() == 1 == torch.get_num_threads()
    assert policy.describe().startswith("threads 1 (fixed")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        policy.configure(0)


def test_the_share_is_measured_over_a_window_from_proc():
    import time

    share = CpuShare(usable_cpus())
    assert share.others() is None  # no span yet
    time.sleep(threads_module.WINDOW_S + 0.05)
    measured = share.others()
    assert measured is not None and measured >= 0.0
    assert share.others() is None  # a new window starts
