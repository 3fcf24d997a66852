"""The package's shape: which folder may import which (imports inside functions counted), the public names of every
package, the old module paths that still import."""

import ast
import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest

import gr00t_fast
from gr00t_fast.moved import MOVED

PACKAGE = Path(gr00t_fast.__file__).parent
REPO = PACKAGE.parent
PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def room(module: str) -> str:
    """The folder of a gr00t_fast module ("policy"), or the module itself for top-level ones ("loading")."""
    return module.split(".")[1] if module.count(".") else "<root>"


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, file) for every gr00t_fast import in the package, at any depth."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            found += [(module, name, str(path)) for name in names if name.startswith("gr00t_fast.")]
    return found


def test_no_folder_imports_a_folder_that_imports_it_back():
    edges = {(room(a), room(b)) for a, b, _ in imports() if room(a) != room(b)}
    edges |= {(a.split(".")[1], b) for a, b, _ in imports() if a.count(".") == 1 and b.count(".") == 1}  # top level
    cycles = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not cycles, f"folders importing each other: {cycles}"


def test_nothing_outside_dev_imports_dev_and_policy_imports_no_export():
    rows = imports()
    assert not [(f, b) for a, b, f in rows if room(b) == "dev" and room(a) != "dev"]
    assert not [(f, b) for a, b, f in rows if room(a) == "policy" and room(b) == "export"]
    implementations = [(f, b) for a, b, f in rows if room(a) == "policy" and room(b) == "backends"
                       and b != "gr00t_fast.backends.base"]
    assert not implementations, "policy/ knows backends through their contract (backends.base) alone"


def test_the_runtime_imports_no_other_layer():
    assert {room(b) for a, b, _ in imports() if room(a) == "runtime"} <= {"runtime"}


@pytest.mark.parametrize("package", ["gr00t_fast", *(f"gr00t_fast.{p}" for p in PACKAGES)])
def test_every_public_name_imports(package):
    module = importlib.import_module(package)
    assert isinstance(module.__all__, list), f"{package} lists its public names in __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_the_top_level_names():
    from gr00t_fast import Gr00tPolicy, Policy, PolicyClient, PolicyConfig, RtcRequest, create_policy, load_policy

    assert load_policy.__module__ == create_policy.__module__ == "gr00t_fast.loading"
    assert [c.__name__ for c in (Gr00tPolicy, Policy, PolicyConfig, RtcRequest)] == ["Gr00tPolicy", "Policy",
                                                                                     "PolicyConfig", "RtcRequest"]
    for cls in (Gr00tPolicy, PolicyClient):  # both implement the contract the loop, servers and plugin rely on
        missing = [name for name in ("action_horizon", "data_config", "video_resolution", "key_dims", "get_action",
                                     "get_modality_config", "supports_rtc", "state_warning", "noise_shape") if not hasattr(cls, name)]
        assert not missing, f"{cls.__name__} lacks {missing} of Policy"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gr00t_fast.nothing  # noqa: B018


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_warn_and_give_the_new_module(old, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported through the old path before: import it anew
    with pytest.warns(DeprecationWarning, match=f"{re.escape(old)} moved to {re.escape(MOVED[old])}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_a_moved_package_s_submodules_are_the_new_modules():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert importlib.import_module("gr00t_fast.bench.cli") is importlib.import_module("gr00t_fast.dev.bench.cli")


DATA_MAY_IMPORT = {"gr00t_fast.policy.data_config", "gr00t_fast.robot.base"}  # keys and joint names, no model


def test_the_data_layer_knows_nothing_of_the_model_and_imports_no_torch():
    """data/ reads recordings for a data config: it imports data/, the data config and the robot's joint names
    alone, and `import gr00t_fast.data` (an `open_dataset(...).step()` too) loads neither torch nor model code."""
    import subprocess

    outside = [(f, b) for a, b, f in imports() if room(a) == "data" and room(b) != "data" and b not in DATA_MAY_IMPORT]
    assert not outside, f"data/ imports {outside}"
    probe = ("import sys, gr00t_fast.data, gr00t_fast.data.dataset; "
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('gr00t_fast.model')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_evaluation_knows_policies_through_the_policy_contract():
    """evaluation/ evaluates whatever implements `Policy` (an in-process one from `loading`, a `PolicyClient`): it
    imports no policy implementation, processor, backend or model code but the hub's id resolution."""
    allowed_rooms = {"evaluation", "data", "cli_args", "control", "loading", "serve"}
    allowed = {"gr00t_fast.policy.config", "gr00t_fast.policy.data_config", "gr00t_fast.policy.metadata",
               "gr00t_fast.policy.base", "gr00t_fast.model.hub"}
    found = [(f, b) for a, b, f in imports() if room(a) == "evaluation" and room(b) not in allowed_rooms
             and b not in allowed]
    assert not found, f"evaluation/ imports {found}"
    source = (PACKAGE / "evaluation" / "open_loop.py").read_text()
    assert "getattr(policy" not in source and "hasattr(policy" not in source


def test_loading_and_the_artifacts_name_no_backend():
    """What differs per backend (quantize modes, packing, host tensors, exports, options, cache keys, what it says of
    its precision) is declared by the backend (`backends.base.Backend`): loading and the artifact code ask its class
    and branch on no backend's name, so a new backend needs no change there."""
    from gr00t_fast.backends import BACKENDS

    for path in (PACKAGE / "loading.py", PACKAGE / "export" / "artifacts.py", PACKAGE / "export" / "manifest.py"):
        named = [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value in BACKENDS]
        assert not named, f"{path.name} names backends: {named}"
