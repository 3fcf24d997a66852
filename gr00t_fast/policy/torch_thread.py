"""One OS thread for all of the policy's PyTorch work, whichever thread asks for it.

PyTorch's CPU ops run on an OpenMP team that belongs to the calling OS thread. Once two threads have run ops
(the main thread loaded and warmed up the model, then the async control loop's worker or a server thread runs
inference), libgomp manages more threads than there are cores and stops spin-waiting between parallel regions;
a model made of many small ops then runs about twice as slow on CPU (tiny model on 2 cores: 13 ms -> 32 ms per
call). Running loading, warm-up and every call on one dedicated thread keeps a single team. On a GPU it costs
one thread hand-off (tens of microseconds) per call.

The thread is a daemon: Ctrl-C while a model loads ends the process at once instead of waiting for the load.
A new thread starts on cuda:0 whatever device its creator used: the policy makes its own device current on it
(`use_device`) before loading and before every call, so side streams and CUDA graph captures land on that device.
"""

import functools
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

import torch

T = TypeVar("T")

_local = threading.local()
_lock = threading.Lock()
_jobs: "queue.SimpleQueue[tuple[Callable, tuple, dict, Future]] | None" = None


def use_device(device: torch.device) -> None:
    """Make `device` the calling thread's current CUDA device (nothing for other devices)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def on_torch_thread() -> bool:
    return getattr(_local, "is_torch_thread", False)


def _serve(jobs: "queue.SimpleQueue[tuple[Callable, tuple, dict, Future]]") -> None:
    _local.is_torch_thread = True
    while True:
        fn, args, kwargs, future = jobs.get()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            future.set_exception(e)


def run_on_torch_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on the process's torch thread (directly when already on it); exceptions propagate.

    Never call it, from the torch thread or not, with a function that waits for another caller of the torch
    thread (e.g. a ZeroMQ round trip to an in-process server): that waits forever.
    """
    global _jobs
    if on_torch_thread():
        return fn(*args, **kwargs)
    with _lock:
        if _jobs is None:
            _jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(_jobs,), name="gr00t-torch", daemon=True).start()
    future: Future = Future()
    _jobs.put((fn, args, kwargs, future))
    return future.result()


def torch_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: the function always runs on the torch thread."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_on_torch_thread(fn, *args, **kwargs)

    return wrapper
