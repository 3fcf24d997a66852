"""Fast paths judged on the user's own recordings (`gr00t-fast eval --compare`): each path is the same checkpoint
loaded another way, evaluated on the same episodes with the same sampler noise, and set against the recording and
against the fp32 reference (the largest deviation from the reference's actions, in the data's units).

| path          | loaded as                                                    |
|---------------|--------------------------------------------------------------|
| `reference`   | float32, the torch backend (the exact path)                  |
| `default`     | the command's own flags (dtype auto: the precision rule)     |
| `bf16`        | bfloat16                                                     |
| `int8`        | `--quantize int8` matmuls                                    |
| `onnxruntime` | exported fp32 graphs run by ONNX Runtime                     |
| `openvino`    | the graphs compiled by OpenVINO, its precision by the rule   |
| `openvino-f32`, `openvino-bf16`, `openvino-int8` | OpenVINO in f32, in bf16, with NNCF INT8 weights |
| `tensorrt`    | TensorRT engines (a CUDA GPU and TensorRT)                   |
| `steps<N>`    | the command's flags with N denoising steps (e.g. steps1)     |

With `--quantize int8 --calibration` on the command, the paths that load int8 on the torch backends (`default`,
`bf16`, `int8`, `steps<N>`) measure its activations on the observations; the others load without them
(`gr00t_fast.policy.config.calibrated`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # `eval --help` reads PATHS without the dataset code
    from gr00t_fast.evaluation.open_loop import EpisodeRun

__all__ = ["PATHS", "compare_rows", "path_batch", "path_modules", "path_options"]

PATHS = ("reference", "default", "bf16", "int8", "onnxruntime", "openvino", "openvino-f32", "openvino-bf16",
         "openvino-int8", "tensorrt", "steps4", "steps2", "steps1")
STEPS = re.compile(r"^steps([1-9][0-9]?)$")


def path_options(path: str) -> dict[str, Any]:
    """The `load_policy` options that make `path` from the command's own (ValueError for an unknown path)."""
    if path == "reference":
        return {"dtype": "float32", "backend": "torch", "quantize": None}
    if path == "default":
        return {}
    if path == "bf16":
        return {"dtype": "bfloat16", "backend": "torch"}
    if path == "int8":
        return {"quantize": "int8", "backend": "torch"}
    if path in ("onnxruntime", "openvino", "tensorrt"):
        return {"backend": path, "quantize": None, "backend_dir": None}
    if path.startswith("openvino-") and path[9:] in ("f32", "bf16", "int8"):
        kind = path[9:]
        return {"backend": "openvino", "backend_dir": None, "dtype": "bfloat16" if kind == "bf16" else "float32",
                "quantize": "int8" if kind == "int8" else None}
    steps = STEPS.match(path)
    if steps:
        return {"denoising_steps": int(steps.group(1))}
    raise ValueError(f"--compare: unknown path {path!r}; known: {', '.join(PATHS)} (steps<N> for any N in 1-99)")


def path_batch(path: str, batch: int) -> int:
    """Observations one call of `path` takes: `batch`, but one for the TensorRT engines it builds (their profile is
    export's default, a batch of one)."""
    return 1 if path == "tensorrt" else batch


def path_modules(path: str) -> tuple[str, ...]:
    """The modules a path needs beyond gr00t-fast's own (its extra), checked before the first path runs."""
    if path == "onnxruntime":
        return "onnx", "onnxruntime"
    if path.startswith("openvino"):
        return ("onnx", "openvino", "nncf") if path == "openvino-int8" else ("onnx", "openvino")
    if path == "tensorrt":
        return "onnx", "tensorrt"
    return ()


def compare_rows(results: dict[str, tuple[list[EpisodeRun], dict]], loaded_as: dict[str, str]) -> list[dict]:
    """Per path: how it loaded (`loaded_as`: path -> its device and precision, e.g. how many layers int8 and on which
    engine), its overall figures against the recording, the largest deviation from the reference's actions (in the
    data's units, over every evaluated step) and the median ms per observation. `results`: path -> (runs, overall
    metrics), the reference among them."""
    reference = {run.episode: run.pred for run in results["reference"][0]}
    rows = []
    for path, (runs, overall) in results.items():
        deviation = max(float(np.abs(run.pred - reference[run.episode]).max()) for run in runs)
        ms = [t for run in runs for t in run.ms_per_observation]
        rows.append({"path": path, "loaded_as": loaded_as[path], "mse": overall["mse"], "mae": overall["mae"],
                     "max_abs": overall["max_abs"], "max_deviation_from_reference": deviation,
                     "ms_per_observation": float(np.median(ms))})
    return rows
