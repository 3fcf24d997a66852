"""All PyTorch work of a policy runs on one thread, whichever thread calls (one OpenMP team, see torch_thread)."""

import gc
import threading
import time
import weakref

import pytest

from gr00t_fast.loading import load_policy
from gr00t_fast.runtime.torch_thread import on_torch_thread, run_on_torch_thread


def test_runs_on_one_thread_reentrantly_and_propagates_errors():
    idents = [run_on_torch_thread(threading.get_ident)]
    worker = threading.Thread(target=lambda: idents.append(run_on_torch_thread(threading.get_ident)))
    worker.start()
    worker.join()
    assert len(set(idents)) == 1 and idents[0] != threading.get_ident() and not on_torch_thread()
    assert run_on_torch_thread(lambda: run_on_torch_thread(on_torch_thread))  # nested: runs in place
    with pytest.raises(ValueError, match="boom"):
        run_on_torch_thread(lambda: (_ for _ in ()).throw(ValueError("boom")))


def test_a_finished_job_leaves_nothing_alive_on_the_torch_thread():
    """While it waits for the next job the thread holds none of the last one's arguments or result: a policy that
    was closed is freed before the next one loads (`bench ab --sequential` on a model that fits only once)."""

    class Weights:
        pass

    argument = Weights()
    result = run_on_torch_thread(lambda _: Weights(), argument)
    refs = [weakref.ref(argument), weakref.ref(result)]
    del argument, result
    for _ in range(500):  # the thread drops its references right after answering
        gc.collect()
        if all(ref() is None for ref in refs):
            break
        time.sleep(0.01)
    assert [ref() for ref in refs] == [None, None]


def test_policy_loads_and_infers_on_the_torch_thread(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    seen = []

    class Spy:
        def __init__(self, backend):
            self.backend = backend

        def __call__(self, *args):
            seen.append((threading.get_ident(), on_torch_thread()))
            return self.backend(*args)

        def stage_ms(self):
            return self.backend.stage_ms()

    policy.backend = Spy(policy.backend)
    obs = policy.dummy_observation()
    policy.get_action(obs)
    caller = threading.Thread(target=policy.get_action, args=(obs,))
    caller.start()
    caller.join()
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0][1]


def test_the_policy_device_is_made_current_on_the_torch_thread(tiny_checkpoint, monkeypatch):
    """A new thread starts on cuda:0: loading and every call make the policy's device current there first."""
    import torch

    from gr00t_fast import loading
    from gr00t_fast.policy import policy as policy_module
    from gr00t_fast.runtime.torch_thread import use_device

    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    use_device(torch.device("cpu"))
    use_device(torch.device("cuda", 1))
    assert made_current == [torch.device("cuda", 1)]

    seen = []
    record = lambda device: seen.append((device, on_torch_thread()))  # noqa: E731
    monkeypatch.setattr(loading, "use_device", record)
    monkeypatch.setattr(policy_module, "use_device", record)
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    policy.get_action(policy.dummy_observation())
    assert seen == [(policy.device, True)] * 2
