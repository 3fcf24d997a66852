"""`load_policy`: checkpoint -> model (+ quantization) -> processor -> backend (+ its artifacts) -> `Gr00tPolicy`."""

from pathlib import Path

import torch

from gr00t_fast.backends import Backend, require_backend
from gr00t_fast.policy.bounds import IN_PROCESS_MAX_BATCH, RequestBounds
from gr00t_fast.policy.data_config import DataConfig, get_data_config
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.policy.policy import Gr00tPolicy, check_steps
from gr00t_fast.policy.processor import processor_for_model
from gr00t_fast.policy.tokenizer import MAX_INSTRUCTION_TOKENS
from gr00t_fast.policy.torch_thread import torch_thread, use_device

TORCH_BACKENDS = ("torch", "compile", "cuda-graph")
ARTIFACT_OPTION = {"onnxruntime": "onnx_dir", "tensorrt": "engine_dir"}  # backend -> its artifact-folder option


def quantize_model(model: torch.nn.Module, mode: str) -> dict[str, int]:
    """`quantize_linears` in place, skipping the layers that see few rows in an example call (batch 1)."""
    from gr00t_fast.backends.eager import TorchBackend
    from gr00t_fast.model.quantize import quantize_linears
    from gr00t_fast.policy.processor import example_inputs

    inputs, noise = example_inputs(model.config, device=model.device, dtype=model.dtype)
    steps = model.config.num_inference_timesteps
    return quantize_linears(model, mode, sample=lambda: TorchBackend(model)(inputs, noise, steps))


def cached_engines(model_path: str | Path, data_config: DataConfig, precision: str, eagle_path: Path | None) -> Path:
    """TensorRT engines for a checkpoint without an engine folder: found in the cache (nothing reloaded or
    re-exported), else built into it."""
    from gr00t_fast.cache import cache_dir
    from gr00t_fast.export.tensorrt import build_engines

    folder = cache_dir() / "tensorrt" / f"{data_config.name}_{precision}"
    return build_engines(model_path, folder, data_config=data_config.name, precision=precision, eagle_path=eagle_path)


def build_backend(name: str, model: torch.nn.Module, model_path: str | Path, data_config: DataConfig,
                  backend_dir: str | Path | None = None, options: dict | None = None) -> Backend:
    """The backend `name` for `model` with its artifacts: `backend_dir` when given, else exported (ONNX) or
    built (TensorRT) into the cache. The capability check comes first: nothing is exported for a backend this
    machine cannot run."""
    cls = require_backend(name, model.device)
    options = dict(options or {})
    if backend_dir is not None:
        if name not in ARTIFACT_OPTION:
            raise ValueError(f"backend_dir is for the backends {sorted(ARTIFACT_OPTION)}, not {name!r}")
        options[ARTIFACT_OPTION[name]] = backend_dir
    elif name == "onnxruntime" and "onnx_dir" not in options:
        from gr00t_fast.export.onnx import cached_onnx_export

        options.update(cached_onnx_export(model, model_path))
    elif name == "tensorrt" and "engine_dir" not in options:
        options["engine_dir"] = cached_engines(model_path, data_config, options.pop("precision", "bf16"),
                                               model.config.eagle_dir)
    return cls(model, **options)


@torch_thread
def load_policy(
    model_path: str | Path,
    *,
    embodiment_tag: str = "new_embodiment",
    data_config: "str | Path | DataConfig" = "auto",
    denoising_steps: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    eagle_path: str | Path | None = None,
    warmup: bool = True,
    backend: str = "torch",
    backend_dir: str | Path | None = None,
    backend_options: dict | None = None,
    quantize: str | None = None,
    seed: int = 0,
    max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS,
    image_preprocessing: str = "auto",
    max_batch: int = IN_PROCESS_MAX_BATCH,
) -> Gr00tPolicy:
    """Load a GR00T N1.5 checkpoint as a policy.

    `data_config`: "auto" (so100 for Isaac-GR00T checkpoints, the checkpoint's own keys for LeRobot ones),
    "so100", "so100_dualcam", a modality JSON path, "metadata" (keys from the checkpoint) or a DataConfig. `device` defaults to CUDA when available; `dtype` to bfloat16 on CUDA and float32 on CPU.
    `backend`: torch, compile, cuda-graph, onnxruntime or tensorrt (`gr00t_fast.backends`); `backend_dir` holds
    exported ONNX graphs / TensorRT engines (without it they are exported / built into the cache);
    `backend_options` go to the backend's constructor (e.g. `{"mode": "reduce-overhead"}` for compile).
    `quantize`: "int8" or "fp8" matmuls in the transformer stacks (`gr00t_fast.model.quantize`; PyTorch backends).
    `seed` seeds the sampler's noise when `get_action` is given none. Instructions longer than
    `max_instruction_tokens` are refused. `image_preprocessing`: "auto" (that of the code that wrote the
    checkpoint: Isaac-GR00T's crop + bilinear resize, or LeRobot's bicubic squash), "isaac" or "lerobot".
    `max_batch`: the most observations one call takes (its frames within the matching pixel budget, see
    `gr00t_fast.policy.bounds`); a larger request is refused before any frame is resized.
    """
    from gr00t_fast.model import load_model
    from gr00t_fast.model.quantize import MODES
    from gr00t_fast.policy.heap import keep_freed_memory

    if quantize is not None and (quantize not in MODES or backend not in TORCH_BACKENDS):
        raise ValueError(f"quantize={quantize!r} needs one of {sorted(MODES)} and a PyTorch backend "
                         f"{TORCH_BACKENDS}, got backend {backend!r} (exported graphs: gr00t-fast export int8)")
    if denoising_steps is not None:
        check_steps(denoising_steps)
    if max_instruction_tokens < 1:
        raise ValueError(f"max_instruction_tokens must be >= 1, got {max_instruction_tokens}")
    bounds = RequestBounds(max_batch)
    metadata = load_metadata(model_path, embodiment_tag)  # bad tag / config fail before the weights load
    config = get_data_config(data_config, metadata.modalities, metadata.source)
    model = load_model(model_path, device=device, dtype=dtype, eagle_path=eagle_path)
    if model.device.type == "cpu":
        keep_freed_memory()
    use_device(model.device)  # this (torch) thread's current CUDA device: backends capture and stream on it
    if quantize is not None:
        quantize_model(model, quantize)
    processor = processor_for_model(model.config, config, metadata, model.device, model.dtype, max_instruction_tokens,
                                    image_preprocessing, bounds)
    policy = Gr00tPolicy(processor, build_backend(backend, model, model_path, config, backend_dir, backend_options),
                         denoising_steps=denoising_steps, seed=seed)
    if warmup:
        policy.warmup()
    return policy
