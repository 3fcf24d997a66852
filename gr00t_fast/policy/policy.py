"""Gr00tPolicy: Isaac-format observation dict in, `action.<key>` arrays out, like Isaac-GR00T's Gr00tPolicy."""

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t_fast.policy.data_config import DataConfig, get_data_config
from gr00t_fast.policy.metadata import EmbodimentMetadata, load_metadata
from gr00t_fast.policy.processor import Processor
from gr00t_fast.backends.base import make_backend, synchronize
from gr00t_fast.policy.tokenizer import PromptTokenizer
from gr00t_fast.policy.torch_thread import torch_thread

STAGES = ("preprocess", "backbone", "action_head", "postprocess", "total")


class Timings:
    """Per-call stage timings (ms) and rolling statistics over the last `window` calls."""

    def __init__(self, window: int = 100):
        self.history: deque[dict[str, float]] = deque(maxlen=window)

    def record(self, stages: dict[str, float]) -> None:
        self.history.append({**stages, "total": sum(stages.values())})

    def clear(self) -> None:
        self.history.clear()

    def summary(self) -> dict:
        """{"count", "last", "mean", "p50", "p90", "max"}; each statistic maps stage -> ms."""
        if not self.history:
            return {"count": 0}
        table = np.array([[row[s] for s in STAGES] for row in self.history])
        stats = {
            "mean": table.mean(0),
            "p50": np.percentile(table, 50, axis=0),
            "p90": np.percentile(table, 90, axis=0),
            "max": table.max(0),
        }
        out = {"count": len(self.history), "last": dict(self.history[-1])}
        out.update({name: dict(zip(STAGES, map(float, values))) for name, values in stats.items()})
        return out


class Gr00tPolicy:
    """A loaded GR00T N1.5 model plus the official pre/post-processing for one embodiment and data config."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Processor,
        tokenizer: PromptTokenizer,
        metadata: EmbodimentMetadata,
        *,
        denoising_steps: int | None = None,
        backend: str = "torch",
        backend_options: dict | None = None,
        seed: int = 0,
    ):
        self.model = model
        self.config = model.config
        self.processor = processor
        self.tokenizer = tokenizer
        self.embodiment_tag = metadata.tag
        self.embodiment_id = metadata.embodiment_id
        self.denoising_steps = self._check_steps(denoising_steps or self.config.num_inference_timesteps)
        self.backend = make_backend(backend, model, **(backend_options or {}))
        self.device = model.device
        self.dtype = model.dtype
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._timings = Timings()

    @property
    def data_config(self) -> DataConfig:
        return self.processor.config

    @property
    def video_resolution(self) -> dict[str, tuple[int, int]]:
        """Training (W, H) per camera of the data config, from metadata.json."""
        return self.processor.video_resolution

    @property
    def action_horizon(self) -> int:
        return self.config.action_horizon

    @property
    def modality_config(self) -> dict:
        return self.get_modality_config()

    def get_modality_config(self) -> dict:
        """modality -> {"delta_indices": [...], "modality_keys": [...]} (plain, serializable)."""
        return self.data_config.modality_config(self.action_horizon)

    @property
    def timings(self) -> dict:
        """Stage timings in ms: the last call and mean/p50/p90/max over the last 100 calls."""
        return self._timings.summary()

    @staticmethod
    def _check_steps(steps) -> int:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"denoising_steps must be an integer >= 1, received {steps!r}")
        return int(steps)

    def _noise(self, noise, batched: bool, batch: int) -> torch.Tensor:
        shape = (self.action_horizon, self.config.max_action_dim)
        want = (batch, *shape) if batched else shape
        if noise is None:
            return torch.randn(
                (batch, *shape), generator=self.generator, device=self.device, dtype=torch.float32
            )
        if not isinstance(noise, (np.ndarray, torch.Tensor)) or tuple(noise.shape) != want:
            got = tuple(noise.shape) if hasattr(noise, "shape") else type(noise).__name__
            raise ValueError(f"noise: expected shape {want}, received {got}")
        noise = torch.as_tensor(noise).to(self.device, torch.float32)
        return noise if batched else noise.unsqueeze(0)

    @torch_thread
    @torch.inference_mode()
    def get_action(self, observation: dict, *, noise=None, denoising_steps: int | None = None) -> dict[str, np.ndarray]:
        """Actions for one observation (`action.<key>` float32 (horizon, D)) or a batch ((B, horizon, D)).

        `noise`: the sampler's initial sample, (horizon, max_action_dim) or (B, horizon, max_action_dim).
        `denoising_steps` overrides the policy default for this call.
        """
        start = time.perf_counter()
        steps = self.denoising_steps if denoising_steps is None else self._check_steps(denoising_steps)
        inputs = self.processor(observation)
        noise = self._noise(noise, inputs.batched, inputs.batch_size)
        ids, mask = self.tokenizer(inputs.instructions, len(self.data_config.video_keys))
        ids = ids.to(self.device)
        mask = None if bool(mask.all()) else mask.to(self.device)
        embodiment = torch.full((inputs.batch_size,), self.embodiment_id, dtype=torch.long, device=self.device)
        synchronize(self.device)
        prepared = time.perf_counter()
        pred = self.backend(ids, mask, inputs.pixel_values, inputs.state, embodiment, noise, steps)
        decoded = time.perf_counter()
        actions = self.processor.decode(pred, inputs.batched)
        end = time.perf_counter()
        model_ms = self.backend.last_timings
        self._timings.record(
            {
                "preprocess": (prepared - start) * 1e3,
                "backbone": model_ms["backbone"],
                "action_head": model_ms["action_head"],
                "postprocess": (end - decoded) * 1e3,
            }
        )
        return actions

    def dummy_observation(self) -> dict:
        """A valid unbatched observation: black frames at the training resolution, mid-range state."""
        obs: dict = {}
        for key, (width, height) in self.video_resolution.items():
            obs[key] = np.zeros((1, height, width, 3), dtype=np.uint8)
        for key in self.data_config.state_keys:
            mid = (self.processor.state_min[key] + self.processor.state_max[key]) / 2
            obs[key] = mid[None, :].copy()
        obs[self.data_config.language_key] = ["warm up"]
        return obs

    @torch_thread
    def warmup(self, iterations: int = 3) -> None:
        """Run real calls so that lazy initialisation (allocator, kernels, caches) is paid before the first action."""
        obs = self.dummy_observation()
        for _ in range(iterations):
            self.get_action(obs)
        self._timings.clear()


CLI_LOAD_OPTIONS = ("embodiment_tag", "data_config", "denoising_steps", "device", "dtype", "eagle_path", "backend",
                    "quantize")
TORCH_BACKENDS = ("torch", "compile", "cuda-graph")
BACKEND_DIR_OPTION = {"onnxruntime": "onnx_dir", "tensorrt": "engine_dir"}


def cli_load_options(options: Any, model_path: str | Path) -> dict[str, Any]:
    """`load_policy` keyword arguments from a command line's attributes (runner config, server args).

    `backend_dir` (exported ONNX graphs or TensorRT engines) becomes the backend's `onnx_dir` / `engine_dir`;
    `tensorrt` without one builds (or reuses) engines for `model_path` in its cache.
    """
    kwargs = {name: getattr(options, name) for name in CLI_LOAD_OPTIONS}
    backend, backend_dir = options.backend, getattr(options, "backend_dir", None)
    if backend_dir:
        if backend not in BACKEND_DIR_OPTION:
            raise ValueError(f"backend_dir is for the backends {sorted(BACKEND_DIR_OPTION)}, not {backend!r}")
        kwargs["backend_options"] = {BACKEND_DIR_OPTION[backend]: backend_dir}
    elif backend == "tensorrt":
        kwargs["backend_options"] = {"model_path": model_path, "data_config": options.data_config}
    return {"model_path": model_path, **kwargs}


@torch_thread
def load_policy(
    model_path: str | Path,
    *,
    embodiment_tag: str = "new_embodiment",
    data_config: "str | Path | DataConfig" = "so100",
    denoising_steps: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    eagle_path: str | Path | None = None,
    warmup: bool = True,
    backend: str = "torch",
    backend_options: dict | None = None,
    quantize: str | None = None,
    seed: int = 0,
) -> Gr00tPolicy:
    """Load a GR00T N1.5 checkpoint as a policy.

    `data_config`: "so100", "so100_dualcam", a modality JSON path, "metadata" (keys from metadata.json) or a
    DataConfig. `device` defaults to CUDA when available; `dtype` to bfloat16 on CUDA and float32 on CPU.
    `backend`: torch, compile, cuda-graph, onnxruntime or tensorrt; `backend_options` go to its constructor
    (e.g. `{"onnx_dir": ...}` for onnxruntime, `{"engine_dir": ...}` for tensorrt, `{"mode": ...}` for compile).
    `quantize`: "int8" or "fp8" matmuls in the transformer stacks (`gr00t_fast.model.quantize`; PyTorch backends).
    `seed` seeds the sampler's noise when `get_action` is given none.
    """
    from gr00t_fast.model import load_model
    from gr00t_fast.model.quantize import MODES, quantize_linears

    if quantize is not None and (quantize not in MODES or backend not in TORCH_BACKENDS):
        raise ValueError(f"quantize={quantize!r} needs one of {sorted(MODES)} and a PyTorch backend "
                         f"{TORCH_BACKENDS}, got backend {backend!r} (exported graphs: gr00t-fast export int8)")

    metadata = load_metadata(model_path, embodiment_tag)  # bad tag / config fail before the weights load
    config = get_data_config(data_config, metadata.modalities)
    model = load_model(model_path, device=device, dtype=dtype, eagle_path=eagle_path)
    if quantize is not None:
        quantize_linears(model, quantize)
    cfg = model.config
    tokenizer = PromptTokenizer.for_model(cfg)
    processor = Processor(
        config,
        metadata,
        max_state_dim=cfg.max_state_dim,
        max_action_dim=cfg.max_action_dim,
        image_size=cfg.image_size,
        device=model.device,
        dtype=model.dtype,
    )
    policy = Gr00tPolicy(model, processor, tokenizer, metadata, denoising_steps=denoising_steps,
                         backend=backend, backend_options=backend_options, seed=seed)
    if warmup:
        policy.warmup()
    return policy
