"""Artifacts for the exported backends: ONNX graphs (fp32, INT8) and TensorRT engines, and the `export` command.

`Artifacts` is what a backend asks for as it loads itself (`gr00t_fast.backends.base.LoadRequest.artifacts`;
`ensure_artifacts`, which loading asked before, is deprecated); `export_onnx`, `export_int8` and `build_engines` (in
`.onnx`, `.int8`, `.tensorrt`) import their optional dependencies only when called.
"""

from gr00t_fast.export.artifacts import Artifacts, ensure_artifacts

__all__ = ["Artifacts", "ensure_artifacts"]
