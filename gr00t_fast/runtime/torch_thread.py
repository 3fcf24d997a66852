"""One OS thread for all of the policy's PyTorch work, whichever thread asks for it.

PyTorch's CPU ops run on an OpenMP team that belongs to the calling OS thread. Once two threads have run ops
(the main thread loaded and warmed up the model, then the async control loop's worker or a server thread runs
inference), libgomp manages more threads than there are cores and stops spin-waiting between parallel regions;
a model made of many small ops then runs about twice as slow on CPU (tiny model on 2 cores: 13 ms -> 32 ms per
call). Running loading, warm-up and every call on one dedicated thread keeps a single team. On a GPU it costs
one thread hand-off (tens of microseconds) per call.

The thread is a daemon: Ctrl-C while a model loads ends the process at once instead of waiting for the load.
Interpreter shutdown must not run while the thread is inside a native torch call, though: Python stops a daemon
thread there by unwinding it through C++ code, which aborts the process (`terminate called without an active
exception`, SIGABRT). A command interrupted while the thread is busy leaves through `exit_if_busy`.
A new thread starts on cuda:0 whatever device its creator used: the policy makes its own device current on it
(`use_device`) before loading and before every call, so side streams and CUDA graph captures land on that device.
"""

import functools
import os
import queue
import sys
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

import torch

T = TypeVar("T")

_local = threading.local()
_lock = threading.Lock()
_jobs: "queue.SimpleQueue[tuple[Callable, tuple, dict, Future]] | None" = None
_unfinished = 0  # jobs handed to the torch thread and not finished yet (under _lock)


def use_device(device: torch.device) -> None:
    """Make `device` the calling thread's current CUDA device (nothing for other devices)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def on_torch_thread() -> bool:
    return getattr(_local, "is_torch_thread", False)


def busy() -> bool:
    """Whether the torch thread has a job queued or running (e.g. a model load its caller stopped waiting for)."""
    return _unfinished > 0


def exit_if_busy(code: int) -> None:
    """End the process now with `code` when the torch thread is busy (a command interrupted during loading):
    stdout and stderr are flushed, then `os._exit` skips the interpreter shutdown that would abort the process
    under the thread's native call. Nothing happens when the thread is idle (a normal exit is safe then)."""
    if not busy():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(code)


def _serve(jobs: "queue.SimpleQueue[tuple[Callable, tuple, dict, Future]]") -> None:
    global _unfinished
    _local.is_torch_thread = True
    while True:
        fn, args, kwargs, future = jobs.get()
        result, error = None, None
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            error = e
        with _lock:  # idle before the caller hears back: busy() is False once a call has returned
            _unfinished -= 1
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
        # hold no job (its arguments: a policy that was closed), result or exception (with its frames) while
        # waiting for the next job
        del fn, args, kwargs, future, result, error


def run_on_torch_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on the process's torch thread (directly when already on it); exceptions propagate.

    Never call it, from the torch thread or not, with a function that waits for another caller of the torch
    thread (e.g. a ZeroMQ round trip to an in-process server): that waits forever.
    """
    global _jobs, _unfinished
    if on_torch_thread():
        return fn(*args, **kwargs)
    future: Future = Future()
    with _lock:
        if _jobs is None:
            _jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(_jobs,), name="gr00t-torch", daemon=True).start()
        _unfinished += 1
        _jobs.put((fn, args, kwargs, future))
    return future.result()


def torch_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: the function always runs on the torch thread."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run_on_torch_thread(fn, *args, **kwargs)

    return wrapper
