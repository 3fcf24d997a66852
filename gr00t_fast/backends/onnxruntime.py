"""`onnxruntime` backend: the exported graphs (fp32 or INT8) run by ONNX Runtime, CUDA provider when available.

    make_backend("onnxruntime", model)                       # exports + validates fp32 graphs into a temp dir
    make_backend("onnxruntime", model, onnx_dir="out/int8")  # runs graphs exported/quantized beforehand
"""

import tempfile
from pathlib import Path

import torch

from gr00t_fast.backends import GraphBackend, example_inputs
from gr00t_fast.export.onnx import export_onnx, ort_session, sampler_name, to_numpy


class OnnxRuntimeBackend(GraphBackend):
    """Runs `vision`, `llm`, `vl` and `sampler_s{N}` ONNX graphs from `onnx_dir` with ONNX Runtime.

    Without `onnx_dir` the float32 model is exported (and checked against PyTorch) into a temporary folder,
    and samplers for other step counts are exported on first use.
    """

    def __init__(self, model: torch.nn.Module, onnx_dir: str | Path | None = None, providers: list[str] | None = None):
        import onnxruntime

        super().__init__(model)
        self.exports_on_demand = onnx_dir is None
        if self.exports_on_demand:
            self._tmp = tempfile.TemporaryDirectory(prefix="gr00t_fast_onnx_")
            onnx_dir = self._tmp.name
        self.onnx_dir = Path(onnx_dir)
        available = onnxruntime.get_available_providers()
        unknown = [p for p in providers or [] if p not in available]
        if unknown:
            raise ValueError(f"ONNX Runtime providers {unknown} are not available here; available: {available}")
        self.providers = providers
        self.sessions = {}
        if self.exports_on_demand:
            self.ensure_sampler(model.config.num_inference_timesteps)  # the first export writes every graph
        for graph in ("vision", "llm", "vl"):
            self.session(graph)

    @property
    def active_providers(self) -> list[str]:
        return self.sessions["vision"].get_providers()

    def session(self, graph: str):
        if graph not in self.sessions:
            path = self.onnx_dir / f"{graph}.onnx"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} does not exist; export it with `gr00t-fast export onnx --steps N --out {self.onnx_dir}`"
                )
            self.sessions[graph] = ort_session(path, self.providers)
        return self.sessions[graph]

    def ensure_sampler(self, num_steps: int) -> str:
        name = sampler_name(num_steps)
        path = self.onnx_dir / f"{name}.onnx"
        if not path.is_file() and self.exports_on_demand:
            graphs = (name,) if self.sessions else None
            export_onnx(self.model, self.onnx_dir, example_inputs(self.config, steps=num_steps), graphs=graphs,
                        progress=False)
        self.session(name)
        return name

    def run(self, graph: str, **inputs: torch.Tensor) -> torch.Tensor:
        session = self.session(graph)
        feeds = {arg.name: to_numpy(_float32(inputs[arg.name])) for arg in session.get_inputs()}
        (out,) = session.run(None, feeds)
        return torch.from_numpy(out).to(self.device)


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x
