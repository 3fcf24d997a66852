"""`gr00t-fast bench <benchmark>`: the benchmark harness. `cli` parses the shared flags, `common` holds the one
timing helper, observation builder and writer, and each other module is one benchmark (`cli.BENCHMARKS` lists them);
`benchmarks/README.md` has the commands and the current figures, `benchmarks/history.md` the method and the
earlier figures."""

from gr00t_fast.dev.bench.cli import main

__all__ = ["main"]
