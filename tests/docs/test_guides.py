"""The guides as a user follows them: every `gr00t-fast` command shown in `docs/` is parsed by its own command line;
those that need no arm, GPU, network, extra environment or minutes of CPU are run, page by page in one folder (a
tiny checkpoint for `/path/to/checkpoint`, a free port for 5555); every ```python block runs as written."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from processes import default_stop_signals

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


def commands(page: Path) -> list[list[str]]:
    """The `gr00t-fast` commands of a page's ```bash blocks, in order: continuation lines joined, comments dropped,
    `a && b` split."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip().startswith("gr00t-fast "):
                    found.append(shlex.split(part, comments=True)[1:])
    return found


def not_run(argv: list[str]) -> str | None:
    """Why a command is parsed but not run here, or None."""
    text = " ".join(argv)
    reasons = [
        ("so100_follower" in text, "drives a real arm"),
        ("tensorrt" in argv, "needs a GPU and TensorRT"),
        (argv[0] == "fleet", "needs the fleet extra: tests/fleet runs this server"),
        (argv[0] == "bench", "a benchmark, minutes of CPU: benchmarks/README.md has its figures"),
        ("nvidia/" in text, "downloads from the Hugging Face Hub (tests/model/test_hub.py resolves ids offline)"),
        ("--demo_task" in text, "fits for about 10 minutes (tests/dev runs the fit in short)"),
        (argv[0] == "run" and "compile" in text and not any(arg.startswith("--model_path") for arg in argv),
         "compiles the demo checkpoint for minutes (4 on an AVX2 EPYC): tests/backends/test_backends.py runs the "
         "compile backend through the policy on the tiny one"),
        (argv[0] == "install-lerobot" and "--dry-run" not in argv, "installs packages"),
        ("--protocol" in argv and "lerobot" in argv, "needs LeRobot's transport: tests/real_lerobot runs this server"),
    ]
    return next((reason for matched, reason in reasons if matched), None)


def parse(argv: list[str]) -> None:
    """The command's own parser on its flags (argparse exits 2 on a bad flag; run's raises ValueError)."""
    command, rest = argv[0], argv[1:]
    if command == "run":
        from gr00t_fast.control.run import parse as parse_run

        parse_run(rest)
        return
    if command == "fleet":
        assert rest[:1] == ["serve"], argv
        command, rest = "fleet serve", rest[1:]
    from gr00t_fast.dev.bench.cli import build_parser as bench_parser
    from gr00t_fast.dev.make_checkpoint import build_parser as checkpoint_parser
    from gr00t_fast.dev.recorded import build_parser as dataset_parser
    from gr00t_fast.evaluation.cli import build_parser as eval_parser
    from gr00t_fast.export.cli import build_parser as export_parser
    from gr00t_fast.policy.data_config_cli import build_parser as data_config_parser
    from gr00t_fast.robot.lerobot_install import build_parser as install_parser
    from gr00t_fast.serve.cli import fleet_parser, serve_parser

    parsers = {"serve": serve_parser, "fleet serve": fleet_parser, "export": export_parser, "bench": bench_parser,
               "make-checkpoint": checkpoint_parser, "install-lerobot": install_parser, "eval": eval_parser,
               "make-dataset": dataset_parser, "data-config": data_config_parser}
    parsers[command]().parse_args(rest)


ALL = [pytest.param(argv, id=f"{page.relative_to(DOCS)}: {' '.join(argv)[:60]}")
       for page in PAGES for argv in commands(page)]


def test_the_guides_show_commands():
    assert len(ALL) >= 20
    assert {argv[0] for argv in (p.values[0] for p in ALL)} >= {"run", "serve", "export", "make-checkpoint", "bench",
                                                                  "install-lerobot", "fleet"}


@pytest.mark.parametrize("argv", ALL)
def test_every_command_parses(argv):
    try:
        parse(argv)
    except SystemExit as e:
        pytest.fail(f"gr00t-fast {' '.join(argv)}: the parser exited {e.code}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gr00t_fast(argv: list[str], cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_stop_signals, **popen)


def runnable_pages() -> list:
    return [pytest.param(page, id=str(page.relative_to(DOCS))) for page in PAGES
            if any(not_run(argv) is None for argv in commands(page))]


INT8_REFUSED = "--quantize int8 does not pay on this CPU"  # `gr00t_fast.model.quantize.int8_engine`'s refusal


@pytest.mark.parametrize("page", runnable_pages())
@pytest.mark.slow
def test_the_cpu_commands_of_each_guide_run(page, tiny_checkpoint, tmp_path):
    """In the page's order, in one folder (a later command uses what an earlier one wrote); a `serve` stays up for
    the commands after it (`run --policy_host`) and must answer them."""
    port, servers, ran = free_port(), [], []
    try:
        for argv in commands(page):
            if not_run(argv) is not None:
                continue
            argv = [arg.replace("/path/to/checkpoint", str(tiny_checkpoint)).replace("5555", str(port)) for arg in argv]
            if argv[0] == "serve":
                server = gr00t_fast(argv, tmp_path)
                servers.append(server)
                for line in server.stdout:  # up once it listens with the model loaded
                    if "listening on" in line:
                        break
                else:
                    pytest.fail(f"gr00t-fast {' '.join(argv)} ended before listening")
                continue
            process = gr00t_fast(argv, tmp_path)
            out, _ = process.communicate(timeout=600)
            if "--quantize" in argv and "int8" in argv and process.returncode == 2 and INT8_REFUSED in out:
                assert "Traceback" not in out and "robot disconnected" not in out, out[-3000:]
                continue  # a CPU whose FBGEMM is no faster than its float32 refuses int8 in one line, as documented
            assert process.returncode == 0, f"gr00t-fast {' '.join(argv)} exited {process.returncode}:\n{out[-3000:]}"
            assert "Traceback" not in out, out[-3000:]
            ran.append(argv[0])
    finally:
        for server in servers:
            server.terminate()
            server.communicate(timeout=60)
    assert ran


def python_blocks() -> list:
    return [pytest.param(block, id=f"{page.relative_to(DOCS)}#{i}") for page in PAGES
            for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


@pytest.mark.parametrize("block", python_blocks())
def test_the_python_examples_run(block, tiny_checkpoint):
    """Each block as written, with the tiny checkpoint for /path/to/checkpoint and, for a client's block, the server
    it expects on 127.0.0.1:5555 moved to a free port (`gr00t-fast serve`'s PolicyServer, in a thread)."""
    from gr00t_fast import PolicyServer, load_policy

    with PolicyServer(load_policy(tiny_checkpoint, device="cpu"), port=0).in_thread() as server:
        code = block.replace("/path/to/checkpoint", str(tiny_checkpoint))
        code = code.replace('PolicyClient("127.0.0.1", 5555', f'PolicyClient("127.0.0.1", {server.port}')
        exec(compile(code, "docs", "exec"), {"__name__": "docs"})  # noqa: S102 - the project's own docs


def test_the_docs_have_python_examples():
    blocks = [p.values[0] for p in python_blocks()]
    assert len(blocks) >= 2 and any("PolicyClient(" in block for block in blocks)
