"""Commands driven as real processes by the tests."""

import queue
import signal
import subprocess
import sys
import threading


def assert_interrupted_while_loading(argv: list[str], program: str) -> None:
    """`gr00t-fast <argv>` gets SIGINT once it prints "loading ...": it must exit 130 with the one line
    "<program>: interrupted while loading the model" (also used by tests/fleet)."""
    process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    stderr: list[str] = []
    readers = [threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)]),
               threading.Thread(target=lambda: stderr.extend(process.stderr))]
    for reader in readers:
        reader.start()
    try:
        while (line := lines.get(timeout=300)) is not None and not line.startswith("loading "):
            pass
        assert line is not None, f"{program} ended before loading: {''.join(stderr)}"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)  # a safety net: it exits at once
    finally:
        process.kill()
        for reader in readers:
            reader.join(10)
    err = "".join(stderr)
    assert "terminate called" not in err and "Traceback" not in err, err
    assert code == 130, (code, err)
    assert err.strip() == f"{program}: interrupted while loading the model", err
