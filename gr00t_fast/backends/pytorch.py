"""What the backends running the PyTorch model (torch, compile, cuda-graph) make of it as they load: its matmuls
quantized when asked (`quantize_model`), its Linear layers packed for oneDNN by the eager backend where that pays
(`pack_model`) and its int8 transformer blocks compiled by it (`gr00t_fast.backends.regional`), plain for the others,
which compile or capture it (packed weights cannot be read there)."""

import errno
import functools
import hashlib
import logging
import os
import weakref
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import torch

from gr00t_fast.backends.base import Backend, LoadRequest
from gr00t_fast.model.inputs import ModelInputs, calibration_inputs, collate, example_inputs
from gr00t_fast.model.int8_cache import INT8_CACHE_FILE, int8_cache_enabled, quantize_cached
from gr00t_fast.model.packed import pack_linears, packing_pays, unpack_linears
from gr00t_fast.model.quantize import (MODES, SampleBatch, int8_engine, kept_layers, prompt_linears, quantize_linears,
                                      quantized_weights)
from gr00t_fast.model.tokenizer import PromptTokenizer
from gr00t_fast.runtime.cache import cache_dir

log = logging.getLogger(__name__)

__all__ = ["PyTorchBackend", "SAMPLE_BATCH", "SYNTHETIC_CALLS", "calls_digest", "int8_cache_folder", "pack_model",
           "quantize_model", "sample_calls"]

# int8 on a CPU without the user's observations: its weights fitted to this many synthetic scenes
# (`calibration_inputs`) rather than each at its nearest level. 8 (and GPTQ damped 0.1, `quantize.GPTQ_DAMP`) since
# 2026-11-27's night, 4 (damped 0.01) before: on an Intel Xeon's 20 simulated observations, 3 noises each, 48M's
# median over the calls of a call's largest action difference from fp32 fell from 2.34 to 1.29 (NVIDIA's bf16 1.81)
# and with outlier channels from 2.02 to 1.59 (1.78), where the largest of all 60 calls rose from 2.85 to 3.18
# (NVIDIA's 2.69); full size: benchmarks/README.md, "Within NVIDIA's own bf16 on the Intel Xeon". A layer's int8
# weight error on 10 of those observations' inputs (48M, the mean over layers): 4 scenes 0.47% damped 0.01, 0.43%
# damped 0.1; 8 scenes 0.40%, 16 0.39%; plain rounding 0.74% (`benchmarks/int8_weight_fit.py`; benchmarks/history.md,
# "GPTQ damped 0.1, 8 synthetic scenes"). The scenes run through the float model during the load: a full-size load
# took ~3-4 min on 2 cores with 4 instead of ~40 s at nearest levels, with 8 266 s (its peak 1.17x the weights held;
# benchmarks/README.md, "While `--quantize int8` loads"); a later load of the same checkpoint reads the layers the
# first one saved (`gr00t_fast.model.int8_cache`). On a GPU not measured: one example call, the nearest levels. Not
# measured either: a bfloat16 model, which fits all the same.
SYNTHETIC_CALLS = 8
# sample calls run as one batched call of the model (`sample_calls`): at full size on an AMD EPYC with AVX2 (Zen 1,
# 2 threads) the 8 synthetic scenes' float32 calls took 115.7 s batched against 142.5 s one by one (their actions
# 1.1e-6 apart), and each deferred layer is read once per batch instead of once per call (~10 s of reads a call).
SAMPLE_BATCH = 8


def quantize_model(model: torch.nn.Module, mode: str,
                   calibration: Sequence[tuple[ModelInputs, torch.Tensor]] | None = None,
                   artifacts: Any = None) -> dict[str, int]:
    """`quantize_linears` in place, its activations measured in the sample calls: `calibration` (host float32
    (inputs, noise) calls of the user's observations, `LoadRequest.calibration`), else for int8 on a CPU
    `SYNTHETIC_CALLS` synthetic scenes (`calibration_inputs`), else an example call (batch 1). int8's weights are
    rounded to fit the observations or the scenes (GPTQ), those of the example call to their nearest levels.
    `artifacts`: the checkpoint's (`LoadRequest.artifacts`, `gr00t_fast.export.artifacts.Artifacts`): int8 on a CPU
    reads its layers from the cache folder where a load with the same key saved them (`int8_cache_folder`), else saves
    them there (`gr00t_fast.model.int8_cache`); None: no cache. Its layer counts go into `model.precision` (the load
    line, `policy.timings`, every benchmark row) and are returned."""
    int8 = mode == "int8"
    scenes = int8 and not calibration and model.device.type == "cpu"
    calls = calibration or (calibration_inputs(model.config, SYNTHETIC_CALLS) if scenes
                            else [example_inputs(model.config)])
    cache = int8_cache_folder(model, artifacts, calls) if int8 and artifacts is not None else None

    def quantize() -> dict[str, int]:
        return quantize_linears(model, mode, sample=sample_calls(model, calls),
                                fit_weights=int8 and bool(calibration or scenes))

    counts, cached = quantize_cached(model, cache, quantize) if cache is not None else (quantize(), None)
    kept = kept_layers(model, mode)
    chosen = int8_engine(model.device) if int8 else None
    engine = {"engine": str(chosen), "layers_timed": chosen.times_layers,
              "kept_in": str(kept.dtype).removeprefix("torch."), "max_layer_error": kept.max_error} if chosen else {}
    observations = {"observations": len(calibration)} if calibration else {"synthetic": SYNTHETIC_CALLS} if scenes \
        else {}
    if model.precision is not None:
        model.precision = replace(model.precision, quantization={"mode": mode, **engine, **counts, **observations,
                                                                 **({"cache": cached} if cached else {})})
    return counts


def int8_cache_folder(model: torch.nn.Module, artifacts: Any,
                      calls: Sequence[tuple[ModelInputs, torch.Tensor]]) -> Path | None:
    """The int8 cache folder of a `--quantize int8` load of `model` from the checkpoint of `artifacts` fitted to the
    sample calls `calls` (`quantize_model`'s: the user's observations, else the synthetic scenes): keyed by the
    checkpoint, gr00t-fast's code, torch's version, the engine (and whether it times layers), what kept layers run in
    and their bound, the model's dtype and config (its Eagle config's too) and `calls` by content; None where a load
    does not cache: not on a CPU (elsewhere int8 takes one example call), `GR00T_FAST_INT8_CACHE=0`, or a cache that
    cannot be written and holds no int8 layers for this key to read as they are (one warning)."""
    if model.device.type != "cpu" or not int8_cache_enabled():
        return None
    kept = kept_layers(model, "int8")
    engine = int8_engine(model.device)  # a pinned FBGEMM's layers are not timed (`Int8Engine.times_layers`)
    key = (torch.__version__, engine.name, engine.times_layers, kept.dtype, kept.max_error, model.dtype,
           repr(model.config), calls_digest(calls))
    try:  # before the checkpoint is hashed: an unwritable cache would hash it again at every load
        cache_dir().mkdir(parents=True, exist_ok=True)
        if not os.access(cache_dir(), os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as err:
        if not artifacts.derived_weights_held("int8", INT8_CACHE_FILE, *key):  # else read as it is (`read_as_it_is`)
            log.warning("int8 cache off for this load: %s cannot be written (%s)", cache_dir(),
                        (err.strerror or str(err)).lower())
            return None
    return artifacts.derived_weights("int8", *key)


def calls_digest(calls: Sequence[tuple[ModelInputs, torch.Tensor]]) -> str:
    """What (inputs, noise) calls are, by content: sha256 over every field of each call, tensors by dtype, shape and
    bytes."""
    h = hashlib.sha256()
    for inputs, noise in calls:
        for value in (*(getattr(inputs, f.name) for f in fields(inputs)), noise):
            if torch.is_tensor(value):
                h.update(f"{value.dtype}{tuple(value.shape)}".encode())
                h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()[:16]


def sample_calls(model: torch.nn.Module, calls: Sequence[tuple[ModelInputs, torch.Tensor]]) -> list[SampleBatch]:
    """`calls` ((inputs, noise) of the host's, e.g. `calibration_inputs`) as the sample calls of `model` in its own
    dtype and on its device, eager and unquantized, `SAMPLE_BATCH` at a time in one batched call (each row one call,
    the padding the batch adds to its prompt dropped from the statistics): what `quantize_linears` measures its
    layers' inputs on."""
    from gr00t_fast.backends.eager import TorchBackend

    steps, backend = model.config.num_inference_timesteps, TorchBackend(model)
    fed = weakref.WeakSet(prompt_linears(model))  # weakly: the float layers go as they are converted
    pad_id = PromptTokenizer.for_model(model.config).pad_id if calls else 0
    batches = []
    for start in range(0, len(calls), SAMPLE_BATCH):
        part = calls[start:start + SAMPLE_BATCH]
        inputs = collate([inputs for inputs, _ in part], pad_id).to(model.device, model.dtype)
        noise = torch.cat([noise for _, noise in part]).to(model.device)
        length = inputs.input_ids.shape[1]  # the padding collate added to each row (a call's own stays)
        pads = tuple(length - own.input_ids.shape[1] for own, _ in part for _ in range(own.batch_size))
        batches.append(SampleBatch(functools.partial(backend, inputs, noise, steps), pads, fed))
    return batches


def pack_model(model: torch.nn.Module) -> int:
    """The eager backend's Linear layers packed for oneDNN where that pays (`gr00t_fast.model.packed`: bfloat16 on a
    CPU with bf16 units, float32 on an AMD one with AVX2 and no AVX-512), counted in `model.precision`; returns how
    many."""
    count = pack_linears(model) if packing_pays(model) else 0
    if count and model.precision is not None:
        model.precision = replace(model.precision, packed_layers=count)
    return count


class PyTorchBackend(Backend):
    """A backend running the PyTorch model itself: it quantizes its matmuls as `load_policy(quantize=...)` asks."""

    quantize_modes = tuple(MODES)  # `model.quantize`: int8 / fp8 matmuls
    calibrates = True

    def describe(self, precision: str) -> str:
        """The model's own `precision`, after this backend's name."""
        return f"{self.name}, {precision}"

    @classmethod
    def check_quantize(cls, quantize: str | None, on_cpu: bool) -> None:
        """int8 for a model on a CPU is refused where the CPU has no fast int8 engine (`int8_engine`: none, or FBGEMM
        no faster than float32), and a `GR00T_FAST_INT8_CACHE` that is not 0 or 1."""
        if quantize == "int8" and on_cpu:
            int8_engine("cpu")
            int8_cache_enabled()  # a bad GR00T_FAST_INT8_CACHE is named before the weights too

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        """As `Backend.configure`, after `check_quantize`: before any weight is read."""
        cls.check_quantize(request.quantize, request.on_cpu())
        return super().configure(request)

    @classmethod
    def deferred_tensors(cls, request: LoadRequest) -> Callable[[torch.nn.Module], Collection[str]] | None:
        """With `quantize`, the Linear weights it converts (`quantized_weights`): each is read as `quantize_model`
        reaches it, and the model is never held whole in float."""
        return quantized_weights if request.quantize is not None else None

    @classmethod
    def load(cls, model: torch.nn.Module, request: LoadRequest) -> Backend:
        """The model's layers plain (a model packed for the eager backend before is unpacked, its compiled blocks get
        their own forward back), quantized as asked."""
        from gr00t_fast.backends.regional import uncompile_blocks  # it imports the compile backend, which imports this

        if unpack_linears(model) and model.precision is not None:
            model.precision = replace(model.precision, packed_layers=0)
        if uncompile_blocks(model) and model.precision is not None:
            model.precision = replace(model.precision, compiled_blocks=0)
        if request.quantize is not None:
            quantize_model(model, request.quantize, request.calibration, request.artifacts)
        return super().load(model, request)
