"""The README's test command is the one `.ci/run` runs, and the slow lane is the rest of the suite."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readmes_test_command_and_the_slow_lane_beside_it():
    test_command = readme_commands()[1]
    assert "pytest" in test_command and '-m "not slow"' in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"lane tests bash -c '{test_command}'" in ci
    assert re.search(r"^lane slow python \$PYTEST -n 2 --dist loadfile -m slow$", ci, re.M)


def test_the_slow_marker_is_registered():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    markers = config["tool:pytest"]["markers"]
    assert re.search(r"^\s*slow:", markers, re.M)
