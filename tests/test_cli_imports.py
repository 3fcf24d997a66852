"""What a command imports before it does anything: `--help` of the commands and `data-config list` start without
torch or the exported backends' runtimes (each one a real interpreter, the first to import anything)."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "cv2")

# a fresh interpreter runs the command through the CLI's `main`; a meta-path hook notes, for each heavy module, the
# chain of gr00t_fast lines that first imported it
PROBE = f"""
import json, sys, traceback
chains = {{}}
class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name in {HEAVY!r} and name not in chains:
            chains[name] = " <- ".join(f"{{f.filename}}:{{f.lineno}}" for f in reversed(traceback.extract_stack())
                                       if "gr00t_fast" in f.filename)
sys.meta_path.insert(0, Recorder())
from gr00t_fast.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as e:
    code = e.code
open(sys.argv[1], "w").write(json.dumps({{"code": code, "imported": chains}}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["eval", "--help"], ["data-config", "list"], ["run", "--help"],
                                  ["serve", "--help"]], ids=" ".join)
def test_help_and_data_config_list_import_no_torch(argv, tmp_path):
    result = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(result), *argv], capture_output=True, text=True)
    assert done.returncode == 0 and result.is_file(), done.stderr
    found = json.loads(result.read_text())
    assert found["code"] in (0, None) and done.stdout.strip(), done.stdout + done.stderr
    assert not found["imported"], "imported by:\n" + "\n".join(f"{m}: {c}" for m, c in found["imported"].items())


def test_the_executable_leaves_its_objects_to_the_os_at_exit_and_still_runs_exit_handlers(tmp_path):
    """`console` freezes the collector once the command is done: the interpreter's shutdown then skips a collection
    over every object torch and the model made (~0.4 s of `gr00t-fast eval`'s exit). Exit handlers still run and see
    the frozen objects; the exit code is the command's."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: open(sys.argv[1], 'w').write(str(gc.get_freeze_count())))\n"
             "from gr00t_fast.cli import console\n"
             "console(['--version'])\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "frozen")], capture_output=True, text=True)
    assert done.returncode == 0 and 'gr00t-fast' in done.stdout, done.stdout + done.stderr
    assert int((tmp_path / "frozen").read_text()) > 1000
