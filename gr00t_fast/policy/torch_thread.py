"""One OS thread for all of the policy's PyTorch work, whichever thread asks for it.

PyTorch's CPU ops run on an OpenMP team that belongs to the calling OS thread. Once two threads have run ops
(the main thread loaded and warmed up the model, then the async control loop's worker or a server thread runs
inference), libgomp manages more threads than there are cores and stops spin-waiting between parallel regions;
a model made of many small ops then runs about twice as slow on CPU (tiny model on 2 cores: 13 ms -> 32 ms per
call). Running loading, warm-up and every call on one dedicated thread keeps a single team. On a GPU it costs
one thread hand-off (tens of microseconds) per call.
"""

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

_local = threading.local()
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _mark_torch_thread() -> None:
    _local.is_torch_thread = True


def on_torch_thread() -> bool:
    return getattr(_local, "is_torch_thread", False)


def run_on_torch_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on the process's torch thread (directly when already on it); exceptions propagate.

    Never call it, from the torch thread or not, with a function that waits for another caller of the torch
    thread (e.g. a ZeroMQ round trip to an in-process server): that waits forever.
    """
    global _executor
    if on_torch_thread():
        return fn(*args, **kwargs)
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="gr00t-torch", initializer=_mark_torch_thread)
    return _executor.submit(fn, *args, **kwargs).result()


def torch_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: the function always runs on the torch thread."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_on_torch_thread(fn, *args, **kwargs)

    return wrapper
