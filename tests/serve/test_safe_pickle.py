"""The allow-list unpickler `serve --protocol lerobot` reads LeRobot's pickles with: what LeRobot's robot_client
sends is built, anything that reaches further is refused in one line before any of it runs."""

from __future__ import annotations

import os
import pickle
import pickletools
import subprocess

import numpy as np
import pytest
import torch

from gr00t_fast.serve.safe_pickle import MAX_OPCODES, UnsafePickle, check_opcodes, loads

LIMIT = 2**20


class Record:
    """A caller's record class: `loads` builds it where the pickle names the admitted class."""

    def __setstate__(self, state):
        self.fields = state


class Config:  # pickled under the admitted name, as LeRobot's dataclass is
    def __init__(self, **fields):
        self.__dict__.update(fields)


ADMITTED = {(__name__, "Config"): Record}


class Reaching:
    """A pickle that calls `call(*args)` when loaded by `pickle.loads`."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_what_lerobots_client_sends_is_built():
    frame = np.arange(480 * 640 * 3, dtype=np.uint8).reshape(480, 640, 3)
    sent = {"shoulder_pan.pos": 1.5, "front": frame, "task": "pick it up", "scalar": np.float32(2.5),
            "strided": np.arange(12.0).reshape(3, 4)[:, 1:].T, "big_endian": np.arange(3, dtype=">f8"),
            "flags": np.array([True, False]), "shape": (6,), "names": ["a", "b"], "ids": {1, 2}, "none": None,
            "config": Config(policy_type="groot", actions_per_chunk=16)}
    for protocol in (4, 5):  # Python 3.8-3.13's default, 3.14's (numpy's arrays travel by _frombuffer in 5)
        built = loads(pickle.dumps(sent, protocol=protocol), ADMITTED, 4 * LIMIT)
        np.testing.assert_array_equal(built["front"], frame)
        assert built["front"].dtype == np.uint8 and built["scalar"] == np.float32(2.5)
        np.testing.assert_array_equal(built["strided"], sent["strided"])
        np.testing.assert_array_equal(built["big_endian"], [0.0, 1.0, 2.0])
        assert {k: built[k] for k in ("shoulder_pan.pos", "task", "shape", "names", "ids", "none")} == \
            {k: sent[k] for k in ("shoulder_pan.pos", "task", "shape", "names", "ids", "none")}
        assert isinstance(built["config"], Record)
        assert built["config"].fields == {"policy_type": "groot", "actions_per_chunk": 16}


def test_numpy_1_spellings_are_built_too():
    data = pickle.dumps(np.arange(4, dtype=np.int16), protocol=4)
    assert b"numpy._core.multiarray" in data
    old = data.replace(b"\x16numpy._core.multiarray", b"\x15numpy.core.multiarray")  # the name's length byte too
    np.testing.assert_array_equal(loads(old, {}, LIMIT), [0, 1, 2, 3])


@pytest.mark.parametrize("reach", [
    Reaching(os.system, "touch {marker}"),
    Reaching(eval, "open({marker!r}, 'w')"),
    Reaching(exec, "open({marker!r}, 'w')"),
    Reaching(open, "{marker}", "w"),
    Reaching(subprocess.Popen, ["touch", "{marker}"]),
    Reaching(np.save, "{marker}", np.zeros(1)),  # numpy's names are admitted one by one, not as a module
], ids=["os.system", "builtins.eval", "builtins.exec", "builtins.open", "subprocess.Popen", "numpy.save"])
def test_a_pickle_reaching_for_anything_else_is_refused_with_nothing_run(reach, tmp_path):
    marker = tmp_path / "ran.npy"
    reach.args = tuple(a.format(marker=str(marker)) if isinstance(a, str) else
                       [x.format(marker=str(marker)) for x in a] if isinstance(a, list) else a for a in reach.args)
    data = pickle.dumps({"front": np.zeros(3), "evil": reach})
    with pytest.raises(UnsafePickle) as refused:
        loads(data, ADMITTED, LIMIT)
    assert "which is not admitted" in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()
    ran = pickle.loads(data)["evil"]  # what LeRobot's own server does: the pickle is a working exploit
    if isinstance(ran, subprocess.Popen):
        ran.wait()
    assert marker.exists()


def test_an_unknown_class_and_a_class_of_the_right_name_elsewhere_are_refused():
    class Unknown:
        pass

    Unknown.__qualname__ = "Unknown"
    globals()["Unknown"] = Unknown
    with pytest.raises(UnsafePickle, match=rf"names {__name__}\.Unknown, which is not admitted"):
        loads(pickle.dumps(Unknown()), ADMITTED, LIMIT)
    with pytest.raises(UnsafePickle, match=r"names .*\.Config, which is not admitted"):
        loads(pickle.dumps(Config(a=1)), {("elsewhere", "Config"): Record}, LIMIT)


def test_object_and_structured_arrays_are_refused():
    for value in (np.array([1, "a"], dtype=object), np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
                  np.array(["text"]), np.array(1.0, dtype=object), np.dtype(object), np.dtype([("a", "f4")])):
        with pytest.raises(UnsafePickle, match="refused"):
            loads(pickle.dumps(value), {}, LIMIT)


class DtypeState:
    """A float dtype whose pickled state gives it an object field (numpy's __setstate__ trusts it)."""

    def __reduce__(self):
        return np.dtype, ("f8", False, True), (3, "|", None, ("a",), {"a": ("O", 0)}, 8, 1, 0x3F)


class SharedDtype:
    """numpy's shared float64 dtype (copy=False), its byte order then changed by BUILD."""

    def __reduce__(self):
        return np.dtype, ("f8", False, False), (3, ">", None, None, None, -1, -1, 0)


class BigArray:
    """numpy's _reconstruct asked for a terabyte before its data is set."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (2**40,), b"b")


class ListArray:
    """An array whose state holds its items as a list (how numpy pickles object arrays)."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("f8"), False, [1.0, 2.0])


class Crafted:
    """A pickle calling one of numpy's admitted names with arguments numpy's own pickles never pass."""

    def __init__(self, *reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def test_numpys_names_with_other_arguments_are_refused():
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer

    for crafted in (Crafted(np.dtype, ("O8", False, True)),  # an object dtype, without the state that marks it
                    Crafted(scalar, ("U1", b"abcd")), Crafted(_frombuffer, (b"abcd", "U1", (1,), "C")),
                    Crafted(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), "U1", False, b"abcd"))):
        with pytest.raises(UnsafePickle, match="refused"):
            loads(pickle.dumps(crafted), {}, LIMIT)


def test_states_and_shapes_numpy_trusts_are_refused():
    with pytest.raises(UnsafePickle, match="dtype's state"):
        loads(pickle.dumps(DtypeState()), {}, LIMIT)
    built = loads(pickle.dumps(SharedDtype()), {}, LIMIT)  # a byte order is a dtype's state numpy writes itself
    assert built == np.dtype(">f8") and np.dtype("f8").byteorder == "="  # the shared one is untouched
    with pytest.raises(UnsafePickle, match="_reconstruct is admitted as numpy calls it"):
        loads(pickle.dumps(BigArray()), {}, LIMIT)
    with pytest.raises(UnsafePickle, match="a numpy array's state is refused"):
        loads(pickle.dumps(ListArray()), {}, LIMIT)
    with pytest.raises(UnsafePickle, match="sets the state of a dict"):
        loads(b"\x80\x04}}b.", {}, LIMIT)  # BUILD on an object that is no admitted record


class NestedDtypeState:
    """A dtype state holding three lists of 200 that point at each other (1.4 KB pickled, 8 million elements)."""

    def __reduce__(self):
        inner = [0] * 200
        bomb = [[[inner] * 200] * 200]
        return np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0, *bomb)


def test_refusals_name_types_never_print_crafted_values():
    from numpy._core.multiarray import scalar

    with pytest.raises(UnsafePickle) as refused:
        loads(pickle.dumps(NestedDtypeState()), {}, LIMIT)
    assert str(refused.value) == "a numpy dtype's state (a tuple) is refused (plain numbers only)"
    with pytest.raises(UnsafePickle) as refused:
        loads(pickle.dumps(Crafted(scalar, ([[0] * 200] * 200, b"abcd"))), {}, LIMIT)
    assert str(refused.value).startswith("numpy arrays of dtype list are refused")


def test_torch_tensors_are_refused_and_their_nested_archive_never_read(tmp_path):
    """A tensor's pickle holds a torch.save archive (`torch.storage._load_from_bytes`) that a full torch.load reads:
    refused by name, before the archive is opened."""
    marker = tmp_path / "ran"

    class Storage:
        def __reduce__(self):
            import io

            buffer = io.BytesIO()
            torch.save(Reaching(os.system, f"touch {marker}"), buffer, _use_new_zipfile_serialization=False)
            return torch.storage._load_from_bytes, (buffer.getvalue(),)

    for value in (torch.zeros(3), Storage()):
        with pytest.raises(UnsafePickle, match=r"names torch\.(_utils\._rebuild_tensor_v2|storage\._load_from_bytes), "
                                               "which is not admitted"):
            loads(pickle.dumps(value), {}, LIMIT)
    assert not marker.exists()


def test_random_bytes_truncated_oversized_and_bombs_are_refused_in_one_line():
    rng = np.random.default_rng(0)
    good = pickle.dumps({"front": np.zeros((4, 4, 3), np.uint8)})
    cases = {
        "random": rng.bytes(4096),
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "oversized": b"\x80\x04" + b"N" * LIMIT,
        "opcodes": b"\x80\x04]" + b"N\x85" * (MAX_OPCODES // 2) + b".",  # many small objects under the byte limit
        "persistent": b"\x80\x04K\x01Q.",
        "extension": b"\x80\x04\x82\x01.",
    }
    messages = {}
    for name, data in cases.items():
        with pytest.raises(UnsafePickle) as refused:
            loads(data, ADMITTED, LIMIT)
        messages[name] = str(refused.value)
    assert all("\n" not in text and len(text) < 500 for text in messages.values()), messages
    assert "exceeds the limit" in messages["oversized"] and "more than 65536 opcodes" in messages["opcodes"]
    assert "persistent ids" in messages["persistent"] and "extension codes" in messages["extension"]


def test_check_opcodes_stops_at_its_bound():
    check_opcodes(pickle.dumps(list(range(100))), max_opcodes=400)
    with pytest.raises(UnsafePickle, match="more than 10 opcodes"):
        check_opcodes(pickle.dumps(list(range(100))), max_opcodes=10)
    assert len(list(pickletools.genops(pickle.dumps(list(range(100)))))) > 10
