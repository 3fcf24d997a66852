"""The one place that assembles a policy (openpi's `create_trained_policy`): checkpoint -> model (+ quantization)
-> processor -> backend (+ the artifacts `gr00t_fast.export` makes for it) -> `Gr00tPolicy`.

It sits above every layer: `policy/` knows neither `export/` nor the backend implementations, `export/` knows no
`policy/`, and this module hands each what it needs.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t_fast.backends import Backend, require_backend
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.export import ensure_artifacts
from gr00t_fast.model import Gr00tConfig, build_meta_model, load_model
from gr00t_fast.model.graphs import GRAPH_HOST_TENSORS
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.model.inputs import example_inputs
from gr00t_fast.model.packed import pack_linears, packing_pays, unpack_linears
from gr00t_fast.model.quantize import MODES, quantize_linears
from gr00t_fast.model.tokenizer import MAX_INSTRUCTION_TOKENS
from gr00t_fast.policy.config import PolicyConfig
from gr00t_fast.policy.bounds import IN_PROCESS_MAX_BATCH, RequestBounds
from gr00t_fast.policy.data_config import DataConfig, get_data_config
from gr00t_fast.policy.transforms import key_transforms
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.policy.policy import Gr00tPolicy, check_steps
from gr00t_fast.policy.processor import processor_for_model
from gr00t_fast.runtime.heap import keep_freed_memory
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.runtime.torch_thread import run_on_torch_thread, torch_thread, use_device

__all__ = ["GRAPH_BACKENDS", "TORCH_BACKENDS", "build_backend", "create_policy", "load_policy", "pack_model",
           "quantize_model"]

TORCH_BACKENDS = ("torch", "compile", "cuda-graph")
GRAPH_BACKENDS = ("onnxruntime", "openvino")  # run exported ONNX graphs: the PyTorch model hosts their embedding
# lookup alone (`load_model(..., only=GRAPH_HOST_TENSORS)`)


def quantize_model(model: torch.nn.Module, mode: str) -> dict[str, int]:
    """`quantize_linears` in place, skipping the layers that see few rows in an example call (batch 1). Its layer
    counts go into `model.precision` (the load line, `policy.timings`, every benchmark row) and are returned."""
    inputs, noise = example_inputs(model.config, device=model.device, dtype=model.dtype)
    steps = model.config.num_inference_timesteps
    counts = quantize_linears(model, mode, sample=lambda: TorchBackend(model)(inputs, noise, steps))
    if model.precision is not None:
        model.precision = replace(model.precision, quantization={"mode": mode, **counts})
    return counts


def pack_model(model: torch.nn.Module) -> int:
    """The eager backend's Linear layers packed for oneDNN where that pays (`gr00t_fast.model.packed`: bfloat16 on a
    CPU with bf16 units), counted in `model.precision`; returns how many."""
    count = pack_linears(model) if packing_pays(model) else 0
    if count and model.precision is not None:
        model.precision = replace(model.precision, packed_layers=count)
    return count


def build_backend(name: str, model: torch.nn.Module, model_path: str | Path, data_config: DataConfig,
                  backend_dir: str | Path | None = None, options: dict | None = None) -> Backend:
    """The backend `name` for `model` with its artifacts (`export.ensure_artifacts`). The capability check comes
    first: nothing is exported for a backend this machine cannot run. The `torch` backend runs `model` as it is;
    every other one gets packed layers back as plain ones (compile, export and capture cannot read packed weights)."""
    cls = require_backend(name, model.device)
    if name != "torch" and unpack_linears(model) and model.precision is not None:
        model.precision = replace(model.precision, packed_layers=0)
    return cls(model, **ensure_artifacts(name, model, model_path, cameras=len(data_config.video_keys),
                                         backend_dir=backend_dir, options=options))


def openvino_precision(model: torch.nn.Module, model_path: Path, runner: Backend, requested: str,
                       processor: Any) -> None:
    """`model.precision` says what the openvino backend runs and why; away from f32 it also says what that costs:
    the largest action difference against fp32 eager on an example call, in the policy's units (as export does).
    fp32 eager's answer is the one the cached export stored (`REFERENCE_ACTIONS`), else computed by a float32 copy
    of the model, loaded for it and freed after."""
    from gr00t_fast.backends import fidelity
    from gr00t_fast.backends.openvino import describe
    from gr00t_fast.export.onnx import REFERENCE_ACTIONS

    dtype = torch.bfloat16 if runner.precision_hint == "bf16" else torch.float32
    reason = describe(runner.precision_hint, runner.weights, requested, sum(p.numel() for p in model.parameters()))
    if runner.precision_hint != "f32" or runner.weights:
        inputs, noise = example_inputs(model.config)
        stored = runner.onnx_dir / REFERENCE_ACTIONS
        if stored.is_file():
            actions = torch.from_numpy(np.load(stored))
            reference = lambda *call: actions  # noqa: E731 - the stored answer to this very call
        else:
            reference = TorchBackend(load_model(model_path, device="cpu", dtype=torch.float32,
                                                eagle_path=model.config.eagle_dir))
        error = fidelity(runner, reference, inputs, noise, model.config.num_inference_timesteps,
                         decode=lambda actions: processor.decode(actions, batched=True))
        del reference
        reason += "; actions vs fp32 eager: max " + ", ".join(
            f"{key.removeprefix('action.')} {diff:.3g}" for key, diff in error["max_abs_diff_by_key"].items())
    model.precision = replace(model.precision, dtype=dtype, requested=requested, reason=reason)


@torch_thread
def load_policy(
    model_path: str | Path,
    *,
    revision: str | None = None,
    embodiment_tag: str = "new_embodiment",
    data_config: "str | Path | DataConfig" = "auto",
    denoising_steps: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = "auto",
    eagle_path: str | Path | None = None,
    warmup: bool = True,
    backend: str = "torch",
    backend_dir: str | Path | None = None,
    backend_options: dict | None = None,
    quantize: str | None = None,
    seed: int = 0,
    threads: int | None = None,
    max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS,
    image_preprocessing: str = "auto",
    max_batch: int = IN_PROCESS_MAX_BATCH,
    openvino_device: str = "CPU",
) -> Gr00tPolicy:
    """Load a GR00T N1.5 checkpoint as a policy: a folder, or a Hugging Face model id `ORG/NAME` at `revision`
    (resolved by huggingface_hub: its cache, HF_HUB_OFFLINE, its token; `gr00t_fast.model.hub`).

    `data_config`: "auto" (so100 for Isaac-GR00T checkpoints, the checkpoint's own keys for LeRobot ones),
    "so100", "so100_dualcam", a modality JSON path, "metadata" (keys from the checkpoint) or a DataConfig. `device` defaults to CUDA when available. `dtype`: "auto"
    (bfloat16 on CUDA; on a CPU bfloat16 where it has AMX / AVX512-BF16 units and the checkpoint 10M parameters or
    more, else float32, a rule decided before the weights are read: `gr00t_fast.model.precision`), float32 (the exact path), bfloat16, float16 or None
    (bfloat16 on CUDA, float32 on CPU); `policy.precision` says what was chosen and why.
    `backend`: torch, compile, cuda-graph, onnxruntime, openvino or tensorrt (`gr00t_fast.backends`); `backend_dir`
    holds exported ONNX graphs / TensorRT engines (without it they are exported / built into the cache); openvino
    takes its precision from `dtype` and `quantize` ("int8": NNCF INT8 weights; `backends.openvino.openvino_options`)
    and runs on `openvino_device` (CPU; GPU, NPU and AUTO are passed through to OpenVINO);
    `backend_options` go to the backend's constructor (e.g. `{"mode": "reduce-overhead"}` for compile).
    `quantize`: "int8" or "fp8" matmuls in the transformer stacks (`gr00t_fast.model.quantize`; PyTorch backends).
    `seed` seeds the sampler's noise when `get_action` is given none. `threads`: the process's torch CPU threads
    (None: adapted before each call to the CPUs other work leaves, `gr00t_fast.runtime.threads`). Instructions longer than
    `max_instruction_tokens` are refused. `image_preprocessing`: "auto" (that of the code that wrote the
    checkpoint: Isaac-GR00T's crop + bilinear resize, or LeRobot's bicubic squash), "isaac" or "lerobot".
    `max_batch`: the most observations one call takes (its frames within the matching pixel budget, see
    `gr00t_fast.policy.bounds`); a larger request is refused before any frame is resized.
    """
    openvino = (dtype, quantize) if backend == "openvino" else None  # its precision: `openvino_options`, below
    if openvino is not None:  # the PyTorch model is float32 (it exports the graphs, runs the embedding lookup)
        dtype, quantize = "float32", None
    if quantize is not None and (quantize not in MODES or backend not in TORCH_BACKENDS):
        raise ValueError(f"quantize={quantize!r} needs one of {sorted(MODES)} and a PyTorch backend "
                         f"{TORCH_BACKENDS} (or openvino: INT8 weights), got backend {backend!r} (exported graphs: "
                         "gr00t-fast export int8)")
    if denoising_steps is not None:
        check_steps(denoising_steps)
    if max_instruction_tokens < 1:
        raise ValueError(f"max_instruction_tokens must be >= 1, got {max_instruction_tokens}")
    bounds = RequestBounds(max_batch)
    model_path = resolve_checkpoint(model_path, revision)
    metadata = load_metadata(model_path, embodiment_tag)  # bad tag / config fail before the weights load
    config = get_data_config(data_config, metadata.modalities, metadata.source)
    key_transforms(config, metadata)  # a config the metadata cannot serve is refused before the weights load
    if openvino is not None:  # the precision rule every backend follows, on the network's size (before any weight)
        from gr00t_fast.backends.openvino import openvino_options

        requested = "auto" if openvino[0] in ("auto", None) else str(openvino[0]).removeprefix("torch.")
        parameters = sum(p.numel() for p in build_meta_model(Gr00tConfig.from_checkpoint(model_path, eagle_path))
                         .parameters())
        backend_options = {**openvino_options(*openvino, parameters), "device": openvino_device,
                           **(backend_options or {})}
    if dtype == "auto" and backend not in TORCH_BACKENDS:
        dtype = None  # exported graphs and engines: the device's default precision
    cpu_threads.configure(threads)
    # exported graphs hold the network: the PyTorch model hosts their embedding lookup alone, in that memory alone
    only = GRAPH_HOST_TENSORS if backend in GRAPH_BACKENDS else None
    model = load_model(model_path, device=device, dtype=dtype, eagle_path=eagle_path, only=only)
    if model.device.type == "cpu":
        keep_freed_memory()
    use_device(model.device)  # this (torch) thread's current CUDA device: backends capture and stream on it
    if quantize is not None:
        quantize_model(model, quantize)
    if backend == "torch":
        pack_model(model)
    runner = build_backend(backend, model, model_path, config, backend_dir, backend_options)
    processor = processor_for_model(model.config, config, metadata, model.device, model.dtype, max_instruction_tokens,
                                    image_preprocessing, bounds, runner.prompt_step)
    if backend == "openvino":
        openvino_precision(model, model_path, runner, requested, processor)
    policy = Gr00tPolicy(processor, runner, denoising_steps=denoising_steps, seed=seed)
    if warmup:
        policy.warmup()
    return policy


def create_policy(config: PolicyConfig, model_path: str | None = None, *, warmup: bool = True,
                  announce: bool = False, **options: Any) -> Gr00tPolicy:
    """The policy `config` describes (`model_path` overrides its checkpoint, e.g. the simulation's demo one;
    `options` go to `load_policy` too, e.g. a server's `max_batch`). `announce` prints "loading <path> ..." from
    the torch thread once the load runs there (a Ctrl-C after that line always interrupts a load in progress, see
    `runtime.torch_thread.exit_if_busy`), and "loaded on <device>, <precision>" once it is done."""
    kwargs = {**config.load_kwargs(model_path), **options}

    def load() -> Gr00tPolicy:
        if announce:
            print(f"loading {kwargs['model_path']} ...", flush=True)
        policy = load_policy(**kwargs, warmup=warmup)
        if announce:
            threads = f", {cpu_threads.describe()}" if policy.device.type == "cpu" else ""
            print(f"loaded on {policy.device}, {policy.precision}{threads}", flush=True)
        return policy

    return run_on_torch_thread(load)
