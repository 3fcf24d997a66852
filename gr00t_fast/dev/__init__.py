"""Development tools, never imported on the inference path: the random-checkpoint maker and the benchmarks."""
