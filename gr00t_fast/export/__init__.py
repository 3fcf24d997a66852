"""Artifacts for the exported backends: ONNX graphs (fp32, INT8) and TensorRT engines, and the `export` command.

`ensure_artifacts` is what loading asks for; `export_onnx`, `export_int8` and `build_engines` (in `.onnx`, `.int8`,
`.tensorrt`) import their optional dependencies only when called.
"""

from gr00t_fast.export.artifacts import ensure_artifacts

__all__ = ["ensure_artifacts"]
