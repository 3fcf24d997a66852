"""Development tools, never imported outside `dev/`: the `make-checkpoint` command (its writer is
`gr00t_fast.model.random_checkpoint`), the demo task, NVIDIA's pipeline for comparisons, and the benchmarks."""

__all__: list[str] = []
