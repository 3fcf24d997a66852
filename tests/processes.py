"""Commands driven as real processes by the tests."""

import os
import queue
import resource
import signal
import subprocess
import sys
import threading


def default_stop_signals() -> None:
    """A child's setup (`preexec_fn`): SIGINT and SIGTERM at their defaults, as in a terminal, and no core file."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a hung command `finish` aborts leaves no core file


class Command:
    """`gr00t-fast <argv>` as a real process: its stdout read line by line as it comes (`wait_for`), signals sent to
    it at chosen moments, then `finish` for (exit code, stdout, stderr)."""

    def __init__(self, argv: list[str]):
        # the stop signals at their defaults, as in a terminal: a suite started in the background (`pytest &`) runs
        # with SIGINT ignored, which its children would inherit (Python then installs no KeyboardInterrupt)
        # faulthandler: a process that hangs is aborted by `finish` and prints where each of its threads stood
        self.process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, preexec_fn=default_stop_signals,
                                        env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        self._lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read_out), threading.Thread(target=self._read_err)]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        for line in self.process.stdout:
            self.out.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _read_err(self) -> None:
        self.err.extend(self.process.stderr)

    def wait_for(self, prefix: str, timeout: float = 300) -> bool:
        """Wait until a stdout line starts with `prefix` (True) or the output ends (False)."""
        while (line := self._lines.get(timeout=timeout)) is not None:
            if line.startswith(prefix):
                return True
        self._lines.put(None)
        return False

    def send(self, signum: int = signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Exit code, stdout and stderr. A process still running after `timeout` s fails the test with what it
        printed and, aborted (SIGABRT: faulthandler), the Python stack of each of its threads."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            code = None
        finally:
            self.process.kill()
            for reader in self._readers:
                reader.join(10)
        err = "".join(self.err)
        assert code is not None, f"still running {timeout:g} s on (aborted): its stderr, then its threads' stacks:\n{err[-8000:]}"
        return code, "".join(self.out), err


def assert_interrupted_while_loading(argv: list[str], program: str) -> None:
    """`gr00t-fast <argv>` gets SIGINT once it prints "loading ...": it must exit 130 with the one line
    "<program>: interrupted while loading the model" (also used by tests/fleet)."""
    command = Command(argv)
    loading = command.wait_for("loading ")
    command.send(signal.SIGINT)
    code, _, err = command.finish(timeout=60)  # a safety net: it exits at once
    assert loading, f"{program} ended before loading: {err}"
    assert "terminate called" not in err and "Traceback" not in err, err
    assert code == 130, (code, err)
    assert err.strip() == f"{program}: interrupted while loading the model", err
