"""Pre + post-processing cost per call (no network): one 640x480 camera by default.

    python benchmarks/bench_preprocess.py [--checkpoint DIR] [--data-config so100] [--iters 200] [--device cpu]

Without --checkpoint a tiny random checkpoint is written to a temporary folder (only its metadata and
tokenizer files are used).
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from gr00t_fast.policy.data_config import get_data_config
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.policy.processor import Processor
from gr00t_fast.backends.base import synchronize
from gr00t_fast.policy.tokenizer import PromptTokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint folder (default: a fresh tiny one)")
    parser.add_argument("--data-config", default="so100")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from gr00t_fast.dev.make_checkpoint import write_checkpoint

        checkpoint = tempfile.mkdtemp(prefix="gr00t_bench_")
        write_checkpoint(checkpoint, size="tiny", seed=0, progress=False)

    metadata = load_metadata(checkpoint, "new_embodiment")
    config = get_data_config(args.data_config, metadata.modalities)
    processor = Processor(config, metadata, max_state_dim=64, max_action_dim=32, device=args.device)
    tokenizer = PromptTokenizer.for_model(Gr00tConfig.from_checkpoint(checkpoint))
    rng = np.random.default_rng(0)
    obs = {k: rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for k, (w, h) in processor.video_resolution.items()}
    obs.update({k: rng.uniform(-50, 50, (1, d)) for k, d in processor.state_dims.items()})
    obs[config.language_key] = ["Pick up the red cube and put it in the box."]
    pred = torch.zeros(1, 16, 32, device=args.device)

    def call() -> tuple[float, float]:
        start = time.perf_counter()
        inputs = processor(obs)
        tokenizer(inputs.instructions, len(config.video_keys))
        synchronize(processor.device)
        mid = time.perf_counter()
        processor.decode(pred, inputs.batched)
        return (mid - start) * 1e3, (time.perf_counter() - mid) * 1e3

    for _ in range(10):
        call()
    pre, post = np.array([call() for _ in range(args.iters)]).T
    cams = ", ".join(f"{k} {w}x{h}" for k, (w, h) in processor.video_resolution.items())
    print(f"{args.data_config} ({cams}) on {args.device}, {torch.get_num_threads()} threads, {args.iters} calls")
    for name, ms in (("preprocess", pre), ("postprocess", post), ("total", pre + post)):
        print(f"  {name:<12} median {np.median(ms):7.3f} ms   p90 {np.percentile(ms, 90):7.3f} ms")


if __name__ == "__main__":
    main()
