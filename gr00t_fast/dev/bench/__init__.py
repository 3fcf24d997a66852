"""`gr00t-fast bench`: inference speed, control-loop and scaling benchmarks, written as JSON, Markdown and PNG.

    gr00t-fast bench inference --size small --reps 20 --out bench_out          # server vs direct, steps, backends
    gr00t-fast bench loop --size tiny --duration 4 --out bench_out             # sync / async / server-client on so100_sim
    gr00t-fast bench scaling --size small --out bench_out                      # cameras, denoising steps, batch
    gr00t-fast bench inference --model_path CKPT --server 10.0.0.2:5555        # also time any Isaac-GR00T server

Method: every configuration sees the same observation and the same initial noise; warm-up calls are excluded from
the statistics and reported separately (with the cold first call); measured calls go round-robin over the
configurations; CUDA is synchronized before every clock read; torch's thread count is pinned and recorded with the
machine and library versions in every JSON file. `benchmarks/README.md` has the method in full and the figures.
"""

from gr00t_fast.dev.bench.cli import main

__all__ = ["main"]
