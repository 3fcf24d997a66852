"""The one place that assembles a policy (openpi's `create_trained_policy`): checkpoint -> model -> processor ->
backend (which loads itself: quantized, packed, exported, cached, `backends.base.Backend.load`) -> `Gr00tPolicy`.

It sits above every layer: `policy/` knows neither `export/` nor the backend implementations, `export/` knows no
`policy/`, and this module hands each what it needs (a backend gets the artifacts of `export/` through its
`LoadRequest`). It names no backend: what differs per backend is the backend's to say.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.backends import DEFAULT_BACKEND, Backend, LoadRequest, backend_class, require_backend
from gr00t_fast.backends.pytorch import pack_model, quantize_model
from gr00t_fast.export import Artifacts
from gr00t_fast.model import Gr00tConfig, build_meta_model, load_model
from gr00t_fast.model.loading import resolve_device_dtype
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.model.tokenizer import MAX_INSTRUCTION_TOKENS
from gr00t_fast.policy.config import PolicyConfig, calibrated, check_calibration
from gr00t_fast.policy.bounds import IN_PROCESS_MAX_BATCH, RequestBounds
from gr00t_fast.policy.data_config import DataConfig
from gr00t_fast.policy.preflight import check_policy_inputs
from gr00t_fast.policy.policy import Gr00tPolicy, check_steps
from gr00t_fast.policy.processor import processor_for_model
from gr00t_fast.runtime.heap import keep_freed_memory
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.runtime.torch_thread import run_on_torch_thread, torch_thread, use_device

__all__ = ["CALIBRATION_SAMPLES", "build_backend", "calibration_calls", "check_calibration_fits", "check_quantize",
           "create_policy", "load_policy", "loaded_as", "pack_model", "quantize_model"]

CALIBRATION_SAMPLES = 8  # observations of a `calibration` file `--quantize int8` measures its activations on


def build_backend(name: str, model: torch.nn.Module, model_path: str | Path, data_config: DataConfig,
                  backend_dir: str | Path | None = None, options: dict | None = None) -> Backend:
    """The backend `name` for a loaded `model` (`Backend.load`: its artifacts given, cached or made; `options` its
    constructor's, `quantize` not applied again). The capability check comes first: nothing is exported for a
    backend this machine cannot run. The backend loads itself on `model` in place, as `load_policy` does: the eager
    backend packs its Linear layers for oneDNN where that pays (`backends.pytorch.pack_model`) and the other PyTorch
    backends unpack them, so pass a model of its own to a backend whose layers must stay as they are."""
    cls = require_backend(name, model.device)
    return cls.load(model, LoadRequest(Path(model_path), dtype=model.dtype, options=options or {},
                                       backend_dir=None if backend_dir is None else Path(backend_dir),
                                       artifacts=Artifacts(model_path, len(data_config.video_keys))))


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
    backend: str = DEFAULT_BACKEND,
    backend_dir: str | Path | None = None,
    backend_options: dict | None = None,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    seed: int = 0,
    threads: int | None = None,
    max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS,
    image_preprocessing: str = "auto",
    max_batch: int = IN_PROCESS_MAX_BATCH,
    openvino_device: str = "CPU",
    warmup_batch: bool = False,
) -> Gr00tPolicy:
    """Load a GR00T N1.5 checkpoint as a policy: a folder, or a Hugging Face model id `ORG/NAME` at `revision`
    (resolved by huggingface_hub: its cache, HF_HUB_OFFLINE, its token; `gr00t_fast.model.hub`).

    `data_config`: "auto" (so100 for Isaac-GR00T checkpoints, the checkpoint's own keys for LeRobot ones),
    "so100", "so100_dualcam", a modality JSON path, "metadata" (keys from the checkpoint) or a DataConfig. `device` defaults to CUDA when available. `dtype`: "auto"
    (bfloat16 on CUDA; on a CPU bfloat16 where it has AMX / AVX512-BF16 units and the checkpoint 10M parameters or
    more, else float32, a rule decided before the weights are read: `gr00t_fast.model.precision`), float32 (the exact path), bfloat16, float16 or None
    (bfloat16 on CUDA, float32 on CPU); `policy.precision` says what was chosen and why.
    `backend`: a name of `gr00t_fast.backends.BACKENDS` (the default runs the model eagerly); `backend_dir`
    holds exported ONNX graphs / TensorRT engines (without it they are exported / built into the cache); openvino
    takes its precision from `dtype` and `quantize` ("int8": NNCF INT8 weights; `backends.openvino.openvino_options`)
    and runs on `openvino_device` (CPU; GPU, NPU and AUTO are passed through to OpenVINO; the backend reads it as
    `LoadRequest.device_name`);
    `backend_options` go to the backend's constructor (e.g. `{"mode": "reduce-overhead"}` for compile).
    `quantize`: "int8" or "fp8" matmuls in the transformer stacks (`gr00t_fast.model.quantize`; PyTorch backends).
    `calibration`: with `quantize="int8"` on a backend that quantizes the network itself (torch, compile,
    cuda-graph), an .npz of your own observations (`gr00t_fast.policy.observations.read_observations`) whose
    activations it measures, up to `CALIBRATION_SAMPLES` of them evenly spaced (default: synthetic scenes); each goes
    through the processor before any weight is read, so a set that does not fit the checkpoint is refused first.
    `seed` seeds the sampler's noise when `get_action` is given none. `threads`: the process's torch CPU threads
    (None: adapted before each call to the CPUs other work leaves, `gr00t_fast.runtime.threads`). Instructions longer than
    `max_instruction_tokens` are refused. `image_preprocessing`: "auto" (that of the code that wrote the
    checkpoint), "isaac" or "lerobot": whose image resizing and state normalization to use (`Processor.state`).
    `max_batch`: the most observations one call takes (its frames within the matching pixel budget, see
    `gr00t_fast.policy.bounds`); a larger request is refused before any frame is resized. `warmup_batch`: the
    warm-up makes a batch of 2 too where the backend compiles anew for the first batch (a server that takes batches;
    `Gr00tPolicy.warmup`).
    """
    cls = backend_class(backend, quantize)  # the backend loads itself (`backends.base.Backend`)
    if denoising_steps is not None:
        check_steps(denoising_steps)
    if max_instruction_tokens < 1:
        raise ValueError(f"max_instruction_tokens must be >= 1, got {max_instruction_tokens}")
    bounds = RequestBounds(max_batch)
    model_path = resolve_checkpoint(model_path, revision)
    # a bad tag, data config, or a config the metadata cannot serve fail before the weights load
    config, metadata = check_policy_inputs(model_path, embodiment_tag, data_config)
    # the model's dtype and the backend's own options (its precision), before any weight is read
    parameters = lambda: sum(p.numel() for p in build_meta_model(  # noqa: E731 - the size, if the rule asks
        Gr00tConfig.from_checkpoint(model_path, eagle_path)).parameters())
    request = cls.configure(LoadRequest(
        model_path, dtype=dtype, quantize=quantize, options=backend_options or {},
        backend_dir=None if backend_dir is None else Path(backend_dir), device_name=openvino_device,
        parameters=parameters, artifacts=Artifacts(model_path, len(config.video_keys)),
        device=resolve_device_dtype(device, None)[0]))
    if calibration is not None:
        request = replace(request, calibration=calibration_calls(
            calibration, cls, request, Gr00tConfig.from_checkpoint(model_path, eagle_path), config, metadata,
            max_instruction_tokens, image_preprocessing, bounds, seed))
    cpu_threads.configure(threads)
    # a backend running exported graphs reads the embedding lookup's table alone: the model holds that alone
    # a backend that quantizes the network reads the weights it converts one layer at a time (`deferred_tensors`)
    model = load_model(model_path, device=device, dtype=request.dtype, eagle_path=eagle_path,
                       only=cls.host_tensors, defer=cls.deferred_tensors(request), quantize=request.quantize)
    try:
        if model.device.type == "cpu":
            keep_freed_memory()
        use_device(model.device)  # this (torch) thread's current CUDA device: backends capture and stream on it
        require_backend(backend, model.device)  # nothing is quantized or exported for a backend this machine cannot run
        processor = processor_for_model(model.config, config, metadata, model.device, model.dtype,
                                        max_instruction_tokens, image_preprocessing, bounds, cls.prompt_step)
        runner = cls.load(model, replace(request, decode=lambda actions: processor.decode(actions, batched=True)))
    finally:  # the checkpoint's files closed on every way out; a load that left deferred weights unread is a bug
        unread, model.deferred_weights = model.deferred_weights, None
        if unread is not None:
            unread.close()
    if unread is not None and unread.pending():
        raise RuntimeError(f"backend {backend!r} left weights unread in {len(unread.pending())} layers after its load")
    policy = Gr00tPolicy(processor, runner, denoising_steps=denoising_steps, seed=seed)
    if warmup:
        policy.warmup(batch=warmup_batch)
    return policy


def calibration_calls(path: str | Path, cls: type[Backend], request: LoadRequest, model_config: Gr00tConfig,
                      data_config: DataConfig, metadata: Any, max_instruction_tokens: int, image_preprocessing: str,
                      bounds: RequestBounds, seed: int) -> list:
    """`CALIBRATION_SAMPLES` host float32 (inputs, noise) calls of the observations at `path`, through a processor
    like the policy's (no weights needed): a file that is not observations, or observations this checkpoint and data
    config do not take, is refused in one line naming the sample."""
    from gr00t_fast.export.int8 import observation_samples

    check_calibration(str(path), request.quantize, cls.name)  # as on a command's flag line: the one rule
    host = processor_for_model(model_config, data_config, metadata, "cpu", torch.float32, max_instruction_tokens,
                               image_preprocessing, bounds, cls.prompt_step)
    return observation_samples(path, host, model_config, CALIBRATION_SAMPLES, seed)


def check_quantize(quantize: str | None, device: str | torch.device | None, backend: str = DEFAULT_BACKEND) -> None:
    """ValueError, one line, no weights read, where `backend` cannot run `quantize` for a model on `device` (None: the
    default device; `Backend.check_quantize`: int8 on a CPU that refuses it), what `load_policy` checks too, for a
    command that must know before its first load or before a robot connects (`run`, `eval --compare`, `bench`)."""
    backend_class(backend, quantize).check_quantize(quantize, resolve_device_dtype(device, None)[0].type == "cpu")


def check_calibration_fits(config: PolicyConfig, model_path: str | Path, data_config: DataConfig,
                           metadata: Any) -> None:
    """ValueError in one line unless every observation of `config.calibration` goes through this checkpoint's
    processor (no weights read): what `load_policy` checks too, for a command that must know before a robot
    connects (`gr00t-fast run`)."""
    cls = backend_class(config.backend, config.quantize)
    calibration_calls(config.calibration, cls, LoadRequest(Path(model_path), quantize=config.quantize),
                      Gr00tConfig.from_checkpoint(model_path, config.eagle_path), data_config, metadata,
                      config.max_instruction_tokens, config.image_preprocessing, RequestBounds(), config.seed)


def create_policy(config: PolicyConfig, model_path: str | None = None, *, warmup: bool = True,
                  announce: bool = False, **options: Any) -> Gr00tPolicy:
    """The policy `config` describes (`model_path` overrides its checkpoint, e.g. the simulation's demo one;
    `options` go to `load_policy` too, e.g. a server's `max_batch`). `announce` prints "loading <path> ..." from
    the torch thread once the load runs there (a Ctrl-C after that line always interrupts a load in progress, see
    `runtime.torch_thread.exit_if_busy`), and "loaded on <device>, <precision>" once it is done (`loaded_as`)."""
    kwargs = calibrated({**config.load_kwargs(model_path), **options})  # `options` may load what it cannot calibrate

    def load() -> Gr00tPolicy:
        if announce:
            print(f"loading {kwargs['model_path']} ...", flush=True)
        policy = load_policy(**kwargs, warmup=warmup)
        if announce:
            print(f"loaded on {loaded_as(policy)}", flush=True)
        return policy

    return run_on_torch_thread(load)


def loaded_as(policy: Gr00tPolicy) -> str:
    """How `policy` runs, as its load line says it: the device; the precision (its int8 layers and their engine, its
    packed and compiled layers), after the backend's name where it is not the default, or an exported backend's
    graphs or engines (the model's own precision is then only its host part's: `Backend.describe`); on a CPU, the
    threads."""
    threads = f", {cpu_threads.describe()}" if policy.device.type == "cpu" else ""
    return f"{policy.device}, {policy.backend.describe(str(policy.precision))}{threads}"
