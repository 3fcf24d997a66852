"""Ctrl-C, wherever it lands: told apart from the errors it can turn into."""


def raised_by_interrupt(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt or has one in its cause/context chain: a pybind11 extension
    (MuJoCo, ...) interrupted by Ctrl-C while importing raises `ImportError: initialization failed` from it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
