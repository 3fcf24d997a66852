"""`openvino` backend: the exported ONNX graphs compiled and run by OpenVINO (`CPU` here; `GPU`, `GPU.1`, `NPU` and
`AUTO:GPU,CPU` passed through to OpenVINO as it names them, not run in this project's CI).

    make_backend("openvino", model, onnx_dir="out/onnx", precision="bf16", weights="int8", cache_dir=...)

`load_policy(..., backend="openvino")` exports the graphs into the cache first (`OnnxGraphBackend.load_options`) and
takes its precision from `dtype` and `quantize` (`configure`): float32 -> f32, bfloat16 -> bf16, auto -> the CPU
precision rule every backend follows (`gr00t_fast.model.precision`); `quantize="int8"` compresses the weights to
INT8 with NNCF (`nncf.compress_weights`, compute stays in the chosen precision), written once as OpenVINO IR beside
the compiled-model cache. The compiled models are cached by OpenVINO (`CACHE_DIR`) in a folder keyed by the digests
of the graphs, gr00t-fast's and OpenVINO's versions, the device and the precision (`load_options`), and compiled
from the file's path, so that a cached one loads without the weights being read. The folder is written by one
process at a time, and every file it holds is recorded with its sha256 as it is written (`runtime.cache.sealed`): a
second process loading the same checkpoint at once waits for the first one's compile, then loads it; a file the
cache did not write, or one changed since, is named in one line and the folder compiled again before anything runs
from it. The policy's PyTorch model holds the embedding table alone (`OnnxGraphBackend.host_tensors`). Away from f32
the load line says what the precision costs in actions against fp32 eager (`state_precision`). The sampler runs as
one graph: real-time chunking needs the torch backend.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from gr00t_fast.backends.base import Backend, LoadRequest, fidelity, package_missing
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.graph import OnnxGraphBackend, existing_graph, to_numpy
from gr00t_fast.model.graphs import REFERENCE_ACTIONS
from gr00t_fast.model.inputs import example_inputs
from gr00t_fast.runtime.cache import file_digest, sealed
from gr00t_fast.runtime.progress import redrawn

__all__ = ["OpenVinoBackend", "PRECISIONS", "describe", "openvino_options"]

log = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16")  # OpenVINO's INFERENCE_PRECISION_HINT
WEIGHTS = (None, "int8")  # NNCF weight compression


def openvino_options(dtype: str | torch.dtype | None, quantize: str | None, parameters: int) -> dict:
    """The backend's precision options for `load_policy`'s `dtype` and `quantize` on a network of `parameters`:
    float32 -> f32, bfloat16 -> bf16, "auto" / None -> the CPU precision rule every backend follows
    (`gr00t_fast.model.precision.auto_cpu_precision`: bf16 units, the size floor, GR00T_FAST_AUTO_DTYPE);
    `quantize="int8"` -> INT8 weights."""
    from gr00t_fast.model.precision import auto_cpu_precision

    name = str(dtype).removeprefix("torch.") if dtype is not None else "auto"
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"backend 'openvino' runs float32 or bfloat16 (or auto), not {name}")
    if quantize not in WEIGHTS:
        raise ValueError(f"backend 'openvino' compresses weights to int8 (quantize='int8'), not {quantize!r}")
    if name == "auto":
        name = str(auto_cpu_precision(parameters).dtype).removeprefix("torch.")
    return {"precision": {"float32": "f32", "bfloat16": "bf16"}[name], "weights": quantize}


def device_available(device: str, available: list[str]) -> bool:
    """Whether OpenVINO can run `device` as it names devices: one it lists ("CPU", "GPU.1"), a family of them ("GPU"
    where it lists "GPU.0"), or a virtual device over them ("AUTO", "AUTO:GPU,CPU", "MULTI:...", "HETERO:...")."""
    if device.split(":")[0] in ("AUTO", "MULTI", "HETERO"):
        return True
    return device in available or any(name.split(".")[0] == device for name in available)


def describe(precision: str, weights: str | None, requested: str, parameters: int) -> str:
    """Why the openvino backend runs as it does, for `Precision.reason`: with dtype auto, the rule's own reason."""
    from gr00t_fast.model.precision import auto_cpu_precision

    why = f"OpenVINO {precision} compute" + (", NNCF INT8 weights" if weights else "")
    return f"{why} ({auto_cpu_precision(parameters).reason})" if requested == "auto" else why


class OpenVinoBackend(OnnxGraphBackend):
    """Runs `vision`, `llm`, `vl` and `sampler_s{N}` from `onnx_dir` as OpenVINO compiled models on `device`.

    `precision`: "f32" or "bf16" compute; `weights`: None or "int8" (NNCF, IR written once into `cache_dir`);
    `cache_dir`: OpenVINO's compiled-model cache (and the INT8 IR); `threads`: INFERENCE_NUM_THREADS (None:
    OpenVINO's own choice); `requested`: `load_policy`'s dtype as asked ("auto", "float32", "bfloat16"), for the
    precision the policy states (`state_precision`).
    """

    name = "openvino"
    quantize_modes = ("int8",)  # NNCF INT8 weights

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        return package_missing("openvino", "OpenVINO", "openvino")

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        """The PyTorch model loads in float32 (it exports the graphs, runs the embedding lookup); `dtype` and
        `quantize` are OpenVINO's (`openvino_options`), the device `request.device_name` (`load_policy`'s
        `openvino_device`; None: CPU)."""
        requested = "auto" if request.dtype in ("auto", None) else str(request.dtype).removeprefix("torch.")
        size = request.parameters() if requested == "auto" else 0  # the rule's size floor: the network, from its config
        device = {} if request.device_name is None else {"device": request.device_name}
        options = {**openvino_options(request.dtype, request.quantize, size), **device, "requested": requested,
                   **request.options}
        return replace(request, dtype="float32", options=options)

    @classmethod
    def load_options(cls, model: torch.nn.Module, request: LoadRequest) -> dict[str, Any]:
        """The graphs' folder (`OnnxGraphBackend.load_options`) and a cache folder for their compiled models, keyed by
        the graphs' digests, gr00t-fast's and OpenVINO's versions, the device and the precision (a `cache_dir` option
        names another, None none)."""
        import openvino

        options = super().load_options(model, request)
        if "cache_dir" not in options:
            options["cache_dir"] = request.artifacts.compiled_cache(
                cls.name, options["onnx_dir"], openvino.__version__.split("-")[0], options.get("device", "CPU"),
                options.get("precision", "f32"), options.get("weights") or "fp")
        return options

    @classmethod
    def load(cls, model: torch.nn.Module, request: LoadRequest) -> Backend:
        """The graphs compiled (`load_options`); with `request.decode`, the precision they run in stated with its
        cost (`state_precision`)."""
        backend = super().load(model, request)
        if request.decode is not None:
            backend.state_precision(request.model_path, request.decode)
        return backend

    def __init__(self, model: torch.nn.Module, onnx_dir: str | Path, precision: str = "f32", weights: str | None = None,
                 device: str = "CPU", cache_dir: str | Path | None = None, threads: int | None = None,
                 export_sampler: Callable[[int], None] | None = None, progress: bool = True,
                 requested: str | None = None):
        import openvino as ov

        super().__init__(model, onnx_dir, export_sampler)
        if precision not in PRECISIONS or weights not in WEIGHTS:
            raise ValueError(f"openvino precision must be one of {PRECISIONS} and weights one of {WEIGHTS}, got "
                             f"{precision!r} and {weights!r}")
        self.core = ov.Core()
        if not device_available(device, self.core.available_devices):
            raise ValueError(f"OpenVINO device {device!r} is not available here; available: "
                             f"{self.core.available_devices}")
        self.device_name, self.weights, self.precision_hint = device, weights, precision
        self.requested = requested or {"f32": "float32", "bf16": "bfloat16"}[precision]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.progress = progress
        self.config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if self.cache_dir is not None:  # compiled models and INT8 IR, written under `sealed` (`load_graph`)
            self.config["CACHE_DIR"] = str(self.cache_dir / "compiled")
        self.ports: dict[str, list[str]] = {}
        self.compile_s: dict[str, float] = {}
        with redrawn(tqdm(("vision", "llm", "vl"), desc=f"OpenVINO {self.precision_hint} on {device}", unit="graph",
                          disable=not progress)) as bar:  # minutes at full size the first time (then cached)
            for graph in bar:
                bar.set_postfix_str(graph)
                self.graph(graph)

    @functools.cached_property
    def precision(self) -> str:
        return f"OpenVINO {self.precision_hint}" + (", int8 weights (NNCF)" if self.weights else "") + \
            f" on {self.device_name}"

    @property
    def threads(self) -> int:
        """The threads OpenVINO runs a call with: `threads`, or its own choice, fixed when it compiled."""
        request = next(iter(self.loaded.values()))
        return int(request.get_compiled_model().get_property("INFERENCE_NUM_THREADS"))

    def source(self, graph: str):
        """What OpenVINO compiles for the graph: the ONNX file's path, or (INT8 weights) that of its compressed IR in
        the cache, made on first use and written whole (the model itself without a cache). A path lets a compiled
        model in OpenVINO's cache load without the weights being read."""
        path = existing_graph(self.onnx_dir, graph)
        if self.weights is None:
            return str(path)
        import nncf
        import openvino as ov

        from gr00t_fast.runtime.atomic import staged

        # the IR of these very graph files (their digests: `file_digest`, hashed once per file): never another's
        digest = hashlib.sha256("".join(file_digest(f) for f in sorted(path.parent.iterdir()) if f.is_file())
                                .encode()).hexdigest()[:16]
        ir = self.cache_dir / "int8" / f"{graph}-{digest}" / f"{graph}.xml" if self.cache_dir is not None else None
        if ir is not None and ir.is_file() and ir.with_suffix(".bin").is_file():
            return str(ir)
        nncf.set_log_level(logging.ERROR)  # its per-graph statistics tables: the load line says what was done
        model = nncf.compress_weights(self.core.read_model(str(path)), mode=nncf.CompressWeightsMode.INT8_ASYM)
        if ir is None:
            return model
        with staged(ir.parent, replace=True) as tmp:
            ov.save_model(model, str(tmp / ir.name), compress_to_fp16=False)
        return str(ir)

    def load_graph(self, graph: str):
        """The graph compiled, or its compiled model loaded from the cache: the cache folder is this process's alone
        while it compiles, and what the compile wrote is recorded for the next load to check (`sealed`)."""
        start = time.perf_counter()
        with sealed(self.cache_dir) if self.cache_dir is not None else contextlib.nullcontext():
            try:
                compiled = self.core.compile_model(self.source(graph), self.device_name, self.config)
            except (FileNotFoundError, ValueError):
                raise
            except Exception as e:  # noqa: BLE001 - OpenVINO's RuntimeError zoo: one line naming the graph
                reason = " ".join(str(e).split())[:300]
                raise RuntimeError(f"OpenVINO cannot compile {graph} for {self.device_name} ({type(e).__name__}: "
                                   f"{reason})") from None
        self.compile_s[graph] = time.perf_counter() - start
        if self.progress:
            log.info("OpenVINO compiled %s (%s) in %.1f s", graph, self.precision, self.compile_s[graph])
        return compiled.create_infer_request()

    def state_precision(self, model_path: str | Path, decode: Callable[[torch.Tensor], dict]) -> None:
        """`model.precision` says what OpenVINO runs and why; away from f32 also what that costs: the largest action
        difference against fp32 eager on an example call, in the policy's units (as export does). fp32 eager's
        answer is the one the cached export stored (`REFERENCE_ACTIONS`), else computed by a float32 copy of the
        model, loaded for it and freed after."""
        from gr00t_fast.model import load_model

        model = self.model
        dtype = torch.bfloat16 if self.precision_hint == "bf16" else torch.float32
        reason = describe(self.precision_hint, self.weights, self.requested, sum(p.numel() for p in model.parameters()))
        if self.precision_hint != "f32" or self.weights:
            inputs, noise = example_inputs(model.config)
            stored = self.onnx_dir / REFERENCE_ACTIONS
            if stored.is_file():
                actions = torch.from_numpy(np.load(stored))
                reference = lambda *call: actions  # noqa: E731 - the stored answer to this very call
            else:
                reference = TorchBackend(load_model(model_path, device="cpu", dtype=torch.float32,
                                                    eagle_path=model.config.eagle_dir))
            error = fidelity(self, reference, inputs, noise, model.config.num_inference_timesteps,
                             decode=decode)
            del reference
            reason += "; actions vs fp32 eager: max " + ", ".join(
                f"{key.removeprefix('action.')} {diff:.3g}" for key, diff in error["max_abs_diff_by_key"].items())
        model.precision = replace(model.precision, dtype=dtype, requested=self.requested, reason=reason)

    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        request = self.graph(graph)
        ports = self.ports.setdefault(graph, [next(n for n in port.get_names() if n in feeds)  # a port has
                                              for port in request.model_inputs])  # several names: the graph's own
        request.infer({i: to_numpy(feeds[name]) for i, name in enumerate(ports)})
        out = request.get_output_tensor(0).data
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).to(self.device)
