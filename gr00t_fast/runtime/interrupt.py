"""Ctrl-C, wherever it lands: told apart from the errors it can turn into."""


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
