"""Ctrl-C, wherever it lands: told apart from the errors it can turn into, and not lost where a library catches it."""

import signal
import threading


def interrupt_in(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that `error` is or has in its cause/context chain (None: none there): a pybind11
    extension (MuJoCo, ...) interrupted by Ctrl-C while importing raises `ImportError: initialization failed` from it.
    Its type tells which signal it was (`gr00t_fast.control.signals.Interrupted`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def raised_by_interrupt(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt or has one in its cause/context chain (`interrupt_in`)."""
    return interrupt_in(error) is not None


class RememberedInterrupt:
    """Within it, SIGINT raises KeyboardInterrupt as Python's own handler does, and is remembered: `check()` raises it
    again where something caught it on its way (a pybind11 extension interrupted while it initializes raises
    ImportError, which import probes such as torch's for triton catch). With torch's CUDA build, a Ctrl-C as
    make-checkpoint's fit began was lost 2 of 3 times in one session and the fit ran on (the catcher not found, the
    loss not reproduced since: this is the remedy for a suspected mechanism). It takes over Python's own handler only
    (an ignored SIGINT stays ignored) and only on the main thread, else it just holds `check()`; leaving restores the
    handler that was there."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: list = []  # the handler replaced, where one was

    def __enter__(self) -> "RememberedInterrupt":
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT stays so
            self._previous = [signal.signal(signal.SIGINT, self._handle)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in self._previous:
            signal.signal(signal.SIGINT, handler)

    def _handle(self, _signum: int, _frame: object) -> None:
        self.pending = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt where a SIGINT came within (whether or not it was caught since)."""
        if self.pending:
            raise KeyboardInterrupt
