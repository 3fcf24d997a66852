"""The registered backends' names, in the registry's order, and the default one, declared without importing torch or
any backend: what the commands offer as `--backend` and print in `--help` before anything heavy loads.

`gr00t_fast.backends.BACKENDS` is the registry (a name to its class); tests/backends/test_names.py holds these names
(and which of them calibrate) equal to it, so a backend registered there is declared here too.
"""

__all__ = ["BACKEND_NAMES", "CALIBRATING_BACKENDS", "DEFAULT_BACKEND"]

BACKEND_NAMES = ("torch", "compile", "cuda-graph", "onnxruntime", "openvino", "tensorrt")
DEFAULT_BACKEND = "torch"
CALIBRATING_BACKENDS = ("torch", "compile", "cuda-graph")  # `Backend.calibrates`: int8 measured on `--calibration`
