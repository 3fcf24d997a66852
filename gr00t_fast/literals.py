"""`literal(*choices)`: a `Literal` type that draccus can parse on every version the project supports.

draccus 0.11 decodes `Literal` fields itself; 0.10 (which LeRobot 0.4 pins) has no decoder for them, so one is
registered for each choice type made here.
"""

from typing import Any, Literal

import draccus


def literal(*choices: str) -> Any:
    """`Literal[choices]`, with a draccus decoder that accepts exactly those strings."""
    kind = Literal[choices]

    def decode(raw: Any, *_: Any) -> str:
        if raw not in choices:
            raise ValueError(f"{raw!r} is not one of: {', '.join(choices)}")
        return raw

    draccus.decode.register(kind, decode)
    return kind
