"""`loads`: an allow-list unpickler for pickles that come over the network (LeRobot's async inference sends them).

`pickle.loads` builds whatever a pickle names: `os.system("...")`, `builtins.eval`, any importable callable with any
arguments, so whoever reaches a port that unpickles runs code behind it. `loads` builds only

- pickle's own values: None, booleans, numbers, strings, bytes, tuples, lists, dicts, sets;
- numpy arrays and scalars of plain dtypes (booleans, integers, floats, complex; never object or structured ones):
  the constructors numpy's pickles name, each answered by a checked stand-in here (`ARRAYS`);
- the classes its caller admits by name, mapped onto record classes of the caller's own (their code never runs).

Anything else a pickle names (`os.system`, `builtins.eval`, `subprocess.Popen`, an unknown class) is refused when it
is named, before anything is called, in one line (`UnsafePickle`). Torch tensors too: LeRobot's robot_client sends
Python numbers and numpy arrays, and a tensor's pickle holds a nested torch.save archive whose reader allocates
whatever size the archive declares. An object's state (pickle's BUILD) is set on the admitted records alone, and on
numpy arrays and dtypes in the form numpy writes for plain numbers: numpy trusts a dtype's state (a crafted one gives
a float dtype object fields, or corrupts it).

What a pickle may cost is bounded before it is read: its size, then its opcodes are walked without running them
(`check_opcodes`: at most `MAX_OPCODES`, so at most as many objects; no persistent ids, extension codes or
out-of-band buffers). Arrays hold exactly the bytes the pickle carries.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any, Mapping

import numpy as np

from gr00t_fast.serve.protocol import bounded

__all__ = ["ARRAYS", "MAX_OPCODES", "UnsafePickle", "check_opcodes", "loads"]

MAX_OPCODES = 1 << 16  # a LeRobot observation pickles in a few hundred (its frames are one bytes opcode each)
REFUSED_OPCODES = {  # opcode -> why it has no place in a message
    "PERSID": "persistent ids", "BINPERSID": "persistent ids", "EXT1": "extension codes", "EXT2": "extension codes",
    "EXT4": "extension codes", "NEXT_BUFFER": "out-of-band buffers", "READONLY_BUFFER": "out-of-band buffers",
}


class UnsafePickle(ValueError):
    """A pickle that is refused: it names something not admitted, is malformed, or exceeds a bound (one line)."""


def check_opcodes(data: bytes, max_opcodes: int = MAX_OPCODES) -> None:
    """Walk `data`'s opcodes without running them: UnsafePickle when it is no pickle, holds more than `max_opcodes`
    or uses persistent ids, extension codes or out-of-band buffers. Stops at the first bound exceeded."""
    try:
        for count, (opcode, _, position) in enumerate(pickletools.genops(data), 1):
            if count > max_opcodes:
                raise UnsafePickle(f"pickle holds more than {max_opcodes} opcodes; a LeRobot message has a few hundred")
            if opcode.name in REFUSED_OPCODES:
                raise UnsafePickle(f"pickle uses {REFUSED_OPCODES[opcode.name]} ({opcode.name} at byte {position}), "
                                   "which no LeRobot message holds")
    except UnsafePickle:
        raise
    except Exception as e:  # noqa: BLE001 - pickletools raises ValueError and others for what is no pickle
        raise UnsafePickle(bounded(f"not a pickle ({type(e).__name__}: {' '.join(str(e).split())})", 300)) from None


# --- numpy, as its pickles name it ---------------------------------------------------------------------------------


class _NdarrayType:
    """What a pickle's `numpy.ndarray` stands for here: `_reconstruct`'s first argument, never called itself."""


def _plain(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc":
        shown = dtype.str if isinstance(dtype, np.dtype) else type(dtype).__name__  # never a crafted value's repr
        raise UnsafePickle(bounded(f"numpy arrays of dtype {shown} are refused (plain numbers only: object arrays "
                                   "hold pickled objects)", 300))
    return dtype


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """A dtype of its own (copy=True whatever the pickle says: BUILD then never touches numpy's shared ones)."""
    if not isinstance(spec, str):
        raise UnsafePickle(f"numpy.dtype is admitted with a type code (e.g. 'f4'), got {type(spec).__name__}")
    return _plain(np.dtype(spec, False, True))


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array that the pickle's BUILD fills (`__setstate__`
    checks its data against its shape)."""
    if subtype is not _NdarrayType or shape != (0,):
        raise UnsafePickle("numpy's _reconstruct is admitted as numpy calls it: (numpy.ndarray, (0,), type code)")
    return np.ndarray((0,), np.uint8)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's `_frombuffer` (pickle protocol 5): the bytes as an array of `shape`, which must hold them exactly."""
    if not isinstance(buffer, (bytes, bytearray)):
        raise UnsafePickle(f"numpy's _frombuffer is admitted on bytes, got {type(buffer).__name__}")
    return np.frombuffer(buffer, _plain(dtype)).reshape(shape, order=order)


def _scalar(dtype: Any, data: Any) -> np.generic:
    if not isinstance(data, bytes):
        raise UnsafePickle(f"numpy scalars are admitted from bytes, got {type(data).__name__}")
    return np.frombuffer(data, _plain(dtype), count=1)[0]


def _numpy_names(module: str, name: str, value: Any) -> dict[tuple[str, str], Any]:
    """Both spellings: numpy 2 pickles name `numpy._core`, numpy 1.x `numpy.core`."""
    return {(f"numpy.{package}.{module}", name): value for package in ("_core", "core")}


ARRAYS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayType, ("numpy", "dtype"): _dtype,
    **_numpy_names("multiarray", "_reconstruct", _reconstruct), **_numpy_names("multiarray", "scalar", _scalar),
    **_numpy_names("numeric", "_frombuffer", _frombuffer),
}


# --- the unpickler -------------------------------------------------------------------------------------------------


class _AllowListUnpickler(pickle._Unpickler):
    """Python's own unpickler (its BUILD can be checked: the C one's cannot), building only what is admitted."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, classes: Mapping[tuple[str, str], type]):
        super().__init__(io.BytesIO(data))
        self.admitted, self.records = {**ARRAYS, **classes}, tuple(classes.values())
        self.shown = "".join(f", {module}.{name}" for module, name in classes)

    def find_class(self, module: str, name: str) -> Any:
        found = self.admitted.get((module, name))
        if found is None:
            raise UnsafePickle(bounded(f"the pickle names {module}.{name}, which is not admitted (numpy arrays"
                                       f"{self.shown} only)", 400))
        return found

    def persistent_load(self, pid: Any) -> Any:  # never reached: check_opcodes refuses persistent ids first
        raise UnsafePickle("persistent ids are not admitted")

    def load_build(self) -> None:
        """BUILD (an object's `__setstate__`) on an admitted record, or on an array or dtype with the state numpy
        writes for plain numbers: numpy trusts a dtype's state (one can give a float dtype object fields, or
        corrupt it); an array's names a dtype, which `_dtype` made (every dtype here is born plain and stays so)."""
        state, built = self.stack[-1], self.stack[-2]
        if isinstance(built, np.dtype):
            if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                    and state[2:] == (None, None, None, -1, -1, 0)):
                raise UnsafePickle(f"a numpy dtype's state (a {type(state).__name__}) is refused (plain numbers only)")
        elif isinstance(built, np.ndarray):
            if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)
                    and isinstance(state[4], bytes)):
                raise UnsafePickle("a numpy array's state is refused: (version, shape, dtype, order, bytes) only")
        elif not isinstance(built, self.records):
            raise UnsafePickle(f"the pickle sets the state of a {type(built).__name__}, which is not admitted")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


def loads(data: bytes, classes: Mapping[tuple[str, str], type], max_bytes: int) -> Any:
    """The object pickled in `data`, built from pickle's own values, numpy arrays (`ARRAYS`) and `classes`
    alone ((module, name) as the pickle names it -> the record class built instead: it needs a `__setstate__`, which
    receives the pickled fields); UnsafePickle (one line) for anything else, for malformed data and for more than
    `max_bytes`."""
    if len(data) > max_bytes:
        raise UnsafePickle(f"message of {len(data) / 2**20:.1f} MB exceeds the limit of {max_bytes / 2**20:.1f} MB "
                           "(--max_message_mb)")
    check_opcodes(data)
    try:
        return _AllowListUnpickler(data, classes).load()
    except UnsafePickle:
        raise
    except Exception as e:  # noqa: BLE001 - pickle and the constructors raise a zoo of types on malformed data
        raise UnsafePickle(bounded(f"undecodable pickle ({type(e).__name__}: {' '.join(str(e).split())})", 300)) \
            from None
