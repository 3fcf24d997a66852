"""`gr00t-fast bench`: the benchmark harness (one module per benchmark, `cli.BENCHMARKS` lists them).

    gr00t-fast bench inference --size small --reps 20 --out bench_out     # server vs direct, steps, backends
    gr00t-fast bench backends --size small                                # model-level backends and quantization
    gr00t-fast bench server --size tiny                                   # what the ZeroMQ protocol costs
    gr00t-fast bench loop --size tiny --duration 4                        # sync / async / server-client on so100_sim
    gr00t-fast bench scaling --size small                                 # cameras, denoising steps, batch
    gr00t-fast bench model --size full --load_rss_only                    # stage timings, peak memory of loading

Method: every configuration sees the same observation and the same initial noise; warm-up calls are excluded from
the statistics and reported separately (the first one as the cold call); measured calls go round-robin over the
configurations; the device is synchronized before every clock read; the machine, thread count, load and library
versions are recorded in every JSON file. `benchmarks/README.md` has the method and the figures.
"""

from gr00t_fast.dev.bench.cli import main

__all__ = ["main"]
