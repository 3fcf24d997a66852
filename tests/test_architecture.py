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
                       and b not in ("gr00t_fast.backends.base", "gr00t_fast.backends", "gr00t_fast.backends.names")]
    assert not implementations, ("policy/ knows backends through their contract (backends.base) and the registry "
                                 "alone (its names: backends.names)")


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
    imports no policy implementation, processor, backend or model code but the hub's id resolution, the checks a
    load runs before the weights (`policy.preflight`), how many observations a call may hold (`policy.bounds`) and the
    CPU its results record (`runtime.cpuinfo`)."""
    allowed_rooms = {"evaluation", "data", "cli_args", "typed_config", "control", "loading", "serve"}
    allowed = {"gr00t_fast.policy.config", "gr00t_fast.policy.data_config", "gr00t_fast.policy.metadata",
               "gr00t_fast.policy.preflight", "gr00t_fast.policy.base", "gr00t_fast.policy.bounds",
               "gr00t_fast.model.hub", "gr00t_fast.runtime.lazy", "gr00t_fast.runtime.cpuinfo"}
    found = [(f, b) for a, b, f in imports() if room(a) == "evaluation" and room(b) not in allowed_rooms
             and b not in allowed]
    assert not found, f"evaluation/ imports {found}"
    source = (PACKAGE / "evaluation" / "open_loop.py").read_text()
    assert "getattr(policy" not in source and "hasattr(policy" not in source


# modules that name backends by design (never their classes): what they name is a user's choice among them
NAMES_BACKENDS = {
    "gr00t_fast/dev/": "the benchmarks time the backends they name",
    "gr00t_fast/evaluation/compare.py": "`eval --compare`'s paths are named after the backends they load",
}
# strings spelled like a backend that name something else, per module: what each is
NOT_BACKENDS = {
    "gr00t_fast/cli_args.py": ({"onnxruntime", "openvino", "tensorrt"}, "Python modules, mapped to their extras"),
    "gr00t_fast/robot/lerobot_install.py": ({"torch"}, "the torch package LeRobot is installed beside"),
    "gr00t_fast/export/cli.py": ({"onnxruntime", "tensorrt"}, "Python modules an export needs; the target tensorrt"),
    "gr00t_fast/export/tensorrt.py": ({"tensorrt"}, "the export target it builds (`export_runner`: who runs it)"),
}


def backend_classes() -> set[str]:
    """The names of every class of the backends package that implements the contract (its subclasses of `Backend`,
    intermediate ones too: GraphBackend, PyTorchBackend, ...)."""
    import pkgutil

    import gr00t_fast.backends as package
    from gr00t_fast.backends.base import Backend

    modules = [importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    return {value.__name__ for module in modules for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Backend) and value is not Backend}


def backend_references(source: str, classes: set[str], names: set[str]) -> list[str]:
    """Where `source` uses a backend class (imports it, checks an instance or a subclass against it: any mention) or
    holds a string that is a backend's name, wherever it stands: compared ("cuda-graph" == ...), listed
    (`STATIC = ("cuda-graph",)`), passed (`make_backend("onnxruntime", ...)`) or a default (`default="torch"`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        mentioned = {a.name for a in node.names} if isinstance(node, ast.ImportFrom) else \
            {node.id} if isinstance(node, ast.Name) else {node.attr} if isinstance(node, ast.Attribute) else set()
        found += [f"line {node.lineno}: {name}" for name in sorted(mentioned & classes)]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_backends_names_a_backend_or_checks_a_backend_class():
    """A backend is one class and one registry entry: the commands' choices, the fleet, loading and export read the
    registry and what a backend declares (`isolates_padding`, `prompt_step`, `exports`, ...), never a backend's class
    (isinstance, an import of it) or its name (`name == "cuda-graph"`, `make_backend("onnxruntime", ...)`), so a new
    backend needs no change there. Dev tools and the user-facing lists of `NAMES_BACKENDS` name backends, never their
    classes; `NOT_BACKENDS` lists the strings spelled like a backend that are something else, each one still used."""
    from gr00t_fast.backends import BACKENDS

    classes, found, unused = backend_classes(), {}, dict(NOT_BACKENDS)
    assert {"GraphBackend", "OnnxGraphBackend", "TorchBackend", "CudaGraphBackend"} <= classes
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("gr00t_fast/backends/"):
            continue
        names = set() if any(relative.startswith(prefix) for prefix in NAMES_BACKENDS) else \
            set(BACKENDS) - NOT_BACKENDS.get(relative, (set(),))[0]
        references = backend_references(path.read_text(), classes, names)
        if references:
            found[relative] = references
        if relative in unused and backend_references(path.read_text(), set(), NOT_BACKENDS[relative][0]):
            del unused[relative]
    assert not found, f"modules naming a backend or checking a backend's class: {found}"
    assert not unused, f"NOT_BACKENDS lists strings these modules no longer hold: {sorted(unused)}"


def test_the_backend_check_finds_what_it_forbids():
    """The check above catches each way the seam was crossed before: an isinstance against a graph backend, a name
    compared, a name kept in a constant and compared through it, a name passed or made a default, an implementation
    imported."""
    classes, names = backend_classes(), {"cuda-graph", "torch", "onnxruntime"}
    for line in ("from gr00t_fast.backends.graph import GraphBackend",
                 "ok = isinstance(policy.backend, graph.GraphBackend)",
                 "buckets = GRAPH_BUCKETS if policy.backend.name == 'cuda-graph' else ()",
                 "eager = name in ('torch', 'compile')",
                 "STATIC = ('cuda-graph',)\nbuckets = GRAPH_BUCKETS if backend.name in STATIC else ()",
                 "graphs = make_backend('onnxruntime', model, onnx_dir=folder)",
                 "backend: str = field(default='torch')"):
        assert backend_references(line, classes, names), line
    assert not backend_references("backend = make_backend(name, model)\nok = backend.isolates_padding\n"
                                  "line = f'backend {name!r} runs on torch'", classes, names)


def test_the_lazy_packages_share_one_lazy_import():
    """`gr00t_fast`, `gr00t_fast.policy` and `gr00t_fast.runtime` resolve their names on first use through one helper
    (`runtime.lazy.lazy_names`): no module writes its own module-level `__getattr__`."""
    own = [path.relative_to(REPO).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
           if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                  for node in ast.parse(path.read_text()).body)]
    assert not own, f"modules with their own __getattr__: {own}"
    from gr00t_fast.runtime.lazy import lazy_names

    for name in ("gr00t_fast", "gr00t_fast.policy", "gr00t_fast.runtime"):
        module = importlib.import_module(name)
        assert module.__getattr__.__qualname__ == f"{lazy_names.__name__}.<locals>.__getattr__", name
