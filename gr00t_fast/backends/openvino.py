"""`openvino` backend: the exported ONNX graphs compiled and run by OpenVINO (`CPU` here; `GPU`, `NPU` and `AUTO`
passed through to OpenVINO, not run in this project's CI).

    make_backend("openvino", model, onnx_dir="out/onnx", precision="bf16", weights="int8", cache_dir=...)

`load_policy(..., backend="openvino")` exports the graphs into the cache first (`gr00t_fast.export`) and picks the
precision by a rule (`openvino_options`): bf16 compute where the CPU has bf16 units (AVX512-BF16, AMX), else f32;
`quantize="int8"` compresses the weights to INT8 with NNCF (`nncf.compress_weights`, compute stays in the chosen
precision), written once as OpenVINO IR beside the compiled-model cache. The compiled models are cached by OpenVINO
(`CACHE_DIR`) in a folder keyed by the weights' fingerprint, OpenVINO's version, the device and the precision, and
compiled from the file's path, so that a cached one loads without the weights being read; the policy's PyTorch model
holds the embedding table alone (`gr00t_fast.model.graphs.GRAPH_HOST_TENSORS`). The sampler runs as one graph:
real-time chunking needs the torch backend.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from gr00t_fast.backends.base import package_missing
from gr00t_fast.backends.graph import GraphBackend, existing_graph, onnx_sampler, to_numpy
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


class OpenVinoBackend(GraphBackend):
    """Runs `vision`, `llm`, `vl` and `sampler_s{N}` from `onnx_dir` as OpenVINO compiled models on `device`.

    `precision`: "f32" or "bf16" compute; `weights`: None or "int8" (NNCF, IR written once into `cache_dir`);
    `cache_dir`: OpenVINO's compiled-model cache (and the INT8 IR); `threads`: INFERENCE_NUM_THREADS (None:
    OpenVINO's own choice); `export_sampler(num_steps)`, when given, writes a missing sampler graph on first use.
    """

    name = "openvino"

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        return package_missing("openvino", "OpenVINO", "openvino")

    def __init__(self, model: torch.nn.Module, onnx_dir: str | Path, precision: str = "f32", weights: str | None = None,
                 device: str = "CPU", cache_dir: str | Path | None = None, threads: int | None = None,
                 export_sampler: Callable[[int], None] | None = None, progress: bool = True):
        import openvino as ov

        super().__init__(model)
        if precision not in PRECISIONS or weights not in WEIGHTS:
            raise ValueError(f"openvino precision must be one of {PRECISIONS} and weights one of {WEIGHTS}, got "
                             f"{precision!r} and {weights!r}")
        self.core = ov.Core()
        if not device_available(device, self.core.available_devices):
            raise ValueError(f"OpenVINO device {device!r} is not available here; available: "
                             f"{self.core.available_devices}")
        self.onnx_dir, self.device_name, self.weights = Path(onnx_dir), device, weights
        self.precision_hint = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.export_sampler, self.progress = export_sampler, progress
        self.config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.config["CACHE_DIR"] = str(self.cache_dir / "compiled")
        self.requests: dict = {}
        self.ports: dict[str, list[str]] = {}
        self.compile_s: dict[str, float] = {}
        with redrawn(tqdm(("vision", "llm", "vl"), desc=f"OpenVINO {self.precision_hint} on {device}", unit="graph",
                          disable=not progress)) as bar:  # minutes at full size the first time (then cached)
            for graph in bar:
                bar.set_postfix_str(graph)
                self.request(graph)

    @functools.cached_property
    def precision(self) -> str:
        return f"OpenVINO {self.precision_hint}" + (", int8 weights (NNCF)" if self.weights else "") + \
            f" on {self.device_name}"

    @property
    def threads(self) -> int:
        """The threads OpenVINO runs a call with: `threads`, or its own choice, fixed when it compiled."""
        request = next(iter(self.requests.values()))
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
        from gr00t_fast.runtime.cache import file_digest

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

    def request(self, graph: str):
        if graph not in self.requests:
            start = time.perf_counter()
            try:
                compiled = self.core.compile_model(self.source(graph), self.device_name, self.config)
            except (FileNotFoundError, ValueError):
                raise
            except Exception as e:  # noqa: BLE001 - OpenVINO's RuntimeError zoo: one line naming the graph
                reason = " ".join(str(e).split())[:300]
                raise RuntimeError(f"OpenVINO cannot compile {graph} for {self.device_name} ({type(e).__name__}: "
                                   f"{reason})") from None
            self.requests[graph] = compiled.create_infer_request()
            self.compile_s[graph] = time.perf_counter() - start
            if self.progress:
                log.info("OpenVINO compiled %s (%s) in %.1f s", graph, self.precision, self.compile_s[graph])
        return self.requests[graph]

    def ensure_sampler(self, num_steps: int) -> str:
        return onnx_sampler(self.onnx_dir, num_steps, self.requests, self.request, self.export_sampler)

    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        request = self.request(graph)
        ports = self.ports.setdefault(graph, [next(n for n in port.get_names() if n in feeds)  # a port has
                                              for port in request.model_inputs])  # several names: the graph's own
        request.infer({i: to_numpy(feeds[name]) for i, name in enumerate(ports)})
        out = request.get_output_tensor(0).data
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).to(self.device)
