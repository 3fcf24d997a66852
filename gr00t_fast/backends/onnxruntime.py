"""`onnxruntime` backend: the exported graphs (fp32 or INT8) run by ONNX Runtime, CUDA provider when available.

    make_backend("onnxruntime", model, onnx_dir="out/onnx")   # graphs from `gr00t-fast export onnx|int8`

`load_policy(..., backend="onnxruntime")` without a folder exports the graphs first (gr00t_fast.export).
"""

import functools
from pathlib import Path
from typing import Callable

import torch

from gr00t_fast.backends.base import package_missing
from gr00t_fast.backends.graph import OnnxGraphBackend, existing_graph, to_numpy
from gr00t_fast.model.graphs import graph_file


def ort_session(path: Path, providers: list[str] | None = None):
    """An ONNX Runtime session: CUDA execution provider when available and asked for, else CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # No busy-waiting between runs: the graphs run one after another, interleaved with PyTorch work.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxRuntimeBackend(OnnxGraphBackend):
    """Runs `vision`, `llm`, `vl` and `sampler_s{N}` ONNX graphs from `onnx_dir` with ONNX Runtime (`providers`:
    its execution providers, default CUDA when available, else CPU)."""

    name = "onnxruntime"

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        return package_missing("onnxruntime", "ONNX Runtime", "onnx")

    def __init__(self, model: torch.nn.Module, onnx_dir: str | Path, providers: list[str] | None = None,
                 export_sampler: Callable[[int], None] | None = None):
        import onnxruntime

        super().__init__(model, onnx_dir, export_sampler)
        available = onnxruntime.get_available_providers()
        unknown = [p for p in providers or [] if p not in available]
        if unknown:
            raise ValueError(f"ONNX Runtime providers {unknown} are not available here; available: {available}")
        self.providers = providers
        for graph in ("vision", "llm", "vl"):
            self.graph(graph)

    @functools.cached_property
    def precision(self) -> str:
        """float32 graphs, or int8 where `export int8` quantized them (Q/DQ nodes in the vision graph; read once)."""
        import onnx

        graph = onnx.load(str(graph_file(self.onnx_dir, "vision")), load_external_data=False).graph
        return "int8 Q/DQ graphs" if any(n.op_type == "QuantizeLinear" for n in graph.node) else "float32 graphs"

    @property
    def active_providers(self) -> list[str]:
        return self.graph("vision").get_providers()

    def load_graph(self, graph: str):
        path = existing_graph(self.onnx_dir, graph)
        try:
            return ort_session(path, self.providers)
        except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, ...: a raw multi-line traceback otherwise
            reason = " ".join(str(e).split())[:300]
            raise RuntimeError(f"{path} cannot be loaded by ONNX Runtime, it is corrupt or truncated "
                               f"({type(e).__name__}: {reason}); export it again") from None

    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        session = self.graph(graph)
        (out,) = session.run(None, {arg.name: to_numpy(feeds[arg.name]) for arg in session.get_inputs()})
        return torch.from_numpy(out).to(self.device)
