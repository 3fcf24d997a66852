"""The engine code against the real TensorRT 10 Python API. `import tensorrt` cannot work here: the bindings wheel
(`tensorrt-cu13-bindings`, on PyPI) installs, but its libraries wheel only downloads them from pypi.nvidia.com,
which this workplace cannot reach (`ImportError: libnvonnxparser.so.10: cannot open shared object file`). The real
bindings module still names its whole Python surface: every class, method, property and enum member the engine
code uses must be one of the names registered in its `tensorrt.so` (an invented or removed name is not)."""

import ast
import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest

import gr00t_fast
from gr00t_fast.export.tensorrt import PRECISION_FLAGS, TENSORRT_MAJOR

BINDINGS = importlib.util.find_spec("tensorrt_bindings")
ENGINE_CODE = [Path(gr00t_fast.__file__).parent / p for p in ("export/tensorrt.py", "backends/tensorrt.py")]
# the variables that hold TensorRT objects in the engine code (their attributes are TensorRT's API)
TRT_OBJECTS = {"trt", "builder", "network", "parser", "config", "opt_profile", "engine", "context", "runtime",
               "logger", "profile_obj"}

if BINDINGS is None:
    pytest.skip("tensorrt-cu13-bindings is not installed (bash .ci/fake_cuda_env.sh installs it)",
                allow_module_level=True)


def registered_names() -> tuple[set[bytes], bytes]:
    """The identifiers in the real bindings library, and its bytes (short names share the tail of longer ones)."""
    data = (Path(BINDINGS.origin).parent / "tensorrt.so").read_bytes()
    return set(re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", data)), data


def api_names_used() -> set[str]:
    """Attributes the engine code reads from TensorRT objects, the builder flags, the progress monitor's hooks."""
    names = {flag for flags in PRECISION_FLAGS.values() for flag in flags}
    for path in ENGINE_CODE:
        tree = ast.parse(path.read_text())
        # the functions and classes that touch TensorRT; `build_engines` reads only trt.__version__ (its `config`
        # and `engine` are a Gr00tConfig and a Path)
        scopes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name != "build_engines"
                  and any(isinstance(m, ast.Name) and m.id == "trt" or isinstance(m, ast.Attribute) and m.attr == "trt"
                          for m in ast.walk(n))]
        for node in (n for scope in scopes for n in ast.walk(scope)):
            if isinstance(node, ast.Attribute):
                root = node
                while isinstance(root, ast.Attribute):
                    root = root.value
                chain_on_trt = isinstance(root, ast.Name) and root.id in TRT_OBJECTS
                on_self_trt = (isinstance(root, ast.Name) and root.id == "self"
                               and isinstance(node.value, ast.Attribute) and node.value.attr == "trt")
                if chain_on_trt or on_self_trt:
                    names.add(node.attr)
            if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Attribute) and b.attr == "IProgressMonitor"
                                                      for b in node.bases):
                names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("__")}
    return {n for n in names if not n.startswith("__")}  # __version__ is the Python package's, __init__ Python's


def test_the_bindings_are_tensorrt_10():
    version = importlib.metadata.version("tensorrt_cu13_bindings")
    assert version.split(".")[0] == str(TENSORRT_MAJOR)


def test_every_tensorrt_name_the_engine_code_uses_exists_in_the_real_module():
    identifiers, data = registered_names()
    used = api_names_used()
    assert {"build_serialized_network", "execute_async_v3", "set_tensor_address", "BuilderFlag", "phase_start",
            "FP16", "INPUT"} <= used  # the scan sees the builder, the runtime, the enums and the monitor
    missing = sorted(n for n in used if n.encode() not in identifiers and n.encode() + b"\0" not in data)
    assert missing == []


def test_an_invented_name_is_not_found():
    identifiers, data = registered_names()
    for invented in ("create_network_v2", "build_engine_v9", "set_fp16_mode_strict"):
        assert invented.encode() not in identifiers and invented.encode() + b"\0" not in data
