"""`gr00t-fast serve` as a real process on a free loopback port, for load tests and benchmarks."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from gr00t_fast.serve import PolicyClient

START_TIMEOUT_S = 300  # loading and warming up a small checkpoint on a loaded 2-core machine


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Served:
    """A running `gr00t-fast serve` process: its port, its log, its memory."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path, api_token: str | None = None):
        self.process, self.port, self.log, self.api_token = process, port, log, api_token

    def client(self, timeout_ms: int = 120_000, **options) -> PolicyClient:
        """A client of the server (with its token, unless `options` say otherwise)."""
        return PolicyClient(port=self.port, timeout_ms=timeout_ms, **{"api_token": self.api_token, **options})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status_kb(self, field: str) -> int:
        """A memory figure of /proc/<pid>/status (VmRSS, VmHWM, ...) in kB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))

    def reset_peak(self) -> None:
        """From now on VmHWM (peak RSS) starts at the current RSS (Linux: clear_refs 5)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@contextlib.contextmanager
def serve(checkpoint: str | Path, log: Path, *flags: str, start_timeout_s: float = START_TIMEOUT_S,
          api_token: str | None = None) -> Iterator[Served]:
    """`gr00t-fast serve --model-path checkpoint *flags` on a free port (`--api_token` when given: its clients send
    it), answering pings; killed at the end of the block unless stopped in it. Its output goes to `log`."""
    port = free_port()
    flags += ("--api_token", api_token) if api_token is not None else ()
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", "serve", "--model-path", str(checkpoint),
                                    "--port", str(port), *flags], stdout=out, stderr=subprocess.STDOUT)
    served = Served(process, port, Path(log), api_token)
    try:
        with served.client(timeout_ms=500) as client:
            deadline = time.monotonic() + start_timeout_s
            while not client.ping():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gr00t-fast serve did not start:\n{served.output()[-3000:]}")
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
