"""What the backends running exported graphs share: the graph chain of `gr00t_fast.model.graphs`, timed per part, and
where their folder comes from as they load (`given_folder`: the user's, checked, else the checkpoint's in the cache);
those reading an ONNX export folder (`OnnxGraphBackend`) also its layout, its host tensors and its samplers."""

from abc import abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from gr00t_fast.backends.base import Backend, LoadRequest, StageClock
from gr00t_fast.model.graphs import GRAPH_HOST_TENSORS, graph_file, run_graphs, sampler_name
from gr00t_fast.model.inputs import ModelInputs


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A graph's feed: float tensors as float32 (the exported graphs' precision), on the host."""
    return (x.float() if x.is_floating_point() else x).detach().cpu().numpy()


def existing_graph(onnx_dir: Path, graph: str) -> Path:
    """The file of `graph` in `onnx_dir`, or FileNotFoundError saying how to export it (one line)."""
    path = graph_file(onnx_dir, graph)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; export it with `gr00t-fast export onnx --denoising_steps N "
                                f"--out {onnx_dir}`")
    return path


def given_folder(backend: type[Backend], request: LoadRequest, options: dict[str, Any], option: str) -> bool:
    """Whether the user gave the folder of exports `backend` runs (`backend_dir`, or its constructor option `option`);
    if so, it is checked (a complete export of these weights by one of `backend.exports`, else one line) and set in
    `options`. If not, the backend takes the checkpoint's export from the cache (`request.artifacts`)."""
    folder = request.backend_dir if request.backend_dir is not None else options.get(option)
    if folder is None:
        return False
    options[option] = request.artifacts.given(folder, backend.exports, f"backend {backend.name!r}")
    return True


class GraphBackend(Backend):
    """Runs vision -> image/token merge -> llm -> vl -> sampler_s{N}, one exported graph at a time.

    Subclasses implement `run(graph, feeds)` and `ensure_sampler(num_steps)` (the sampler graph's name). They run
    their artifacts in the precision those were made in: no `quantize`, and `dtype="auto"` leaves the PyTorch model
    (which hosts the embedding lookup) in the device's default. The graphs let prompt padding reach the action head
    as upstream does: a batch of prompts of different lengths is refused (`isolates_padding`).
    """

    isolates_padding = False

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        return replace(request, dtype=None if request.dtype == "auto" else request.dtype)

    @abstractmethod
    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """Output of one graph for its named input tensors."""

    @abstractmethod
    def ensure_sampler(self, num_steps: int) -> str:
        """Make the `num_steps` sampler graph runnable (or raise naming how to export it); returns its name."""

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        if inputs.isolate_padding and inputs.attention_mask is not None:
            raise ValueError(f"backend {self.name!r} runs exported graphs, which let prompt padding reach the action "
                             "head as upstream does; batches of padded prompts with isolate_padding need a PyTorch "
                             "backend (torch, compile, cuda-graph)")
        self.ensure_sampler(num_steps)
        clock = self.split = StageClock(self.device)

        def run(graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
            if graph == "vision" or graph == "vl":  # backbone = vision + merge + llm; action head = vl + sampler
                clock.mark()
            return self.run(graph, feeds)

        actions = run_graphs(run, self.model, inputs, noise, num_steps)
        clock.mark()
        return actions


class OnnxGraphBackend(GraphBackend):
    """A graph backend reading `gr00t-fast export onnx|int8` folders (`onnx_dir`): the PyTorch model holds the
    graphs' host tensors alone. Subclasses keep what they loaded per graph in `self.loaded` and implement
    `load_graph`; `export_sampler(num_steps)`, when given, writes a missing sampler graph into `onnx_dir` on first
    use."""

    exports: ClassVar[tuple[str, ...]] = ("onnx", "int8")  # the `gr00t-fast export` targets it runs
    host_tensors: ClassVar[tuple[str, ...] | None] = GRAPH_HOST_TENSORS

    @classmethod
    def load_options(cls, model: torch.nn.Module, request: LoadRequest) -> dict[str, Any]:
        """The request's options with the graphs' folder: the user's (`backend_dir`, or an `onnx_dir` option), which
        must hold a complete export of these weights, else the checkpoint's export in the cache, made on first use
        (samplers for other step counts too: `export_sampler`)."""
        options = dict(request.options)
        if not given_folder(cls, request, options, "onnx_dir"):
            options["onnx_dir"], options["export_sampler"] = request.artifacts.onnx(model)
        return options

    def __init__(self, model: torch.nn.Module, onnx_dir: str | Path,
                 export_sampler: Callable[[int], None] | None = None):
        super().__init__(model)
        self.onnx_dir, self.export_sampler = Path(onnx_dir), export_sampler
        self.loaded: dict[str, Any] = {}

    @abstractmethod
    def load_graph(self, graph: str) -> Any:
        """What runs `graph` (an ONNX Runtime session, an OpenVINO infer request), made once from its file."""

    def graph(self, graph: str) -> Any:
        """`load_graph(graph)`, once."""
        if graph not in self.loaded:
            self.loaded[graph] = self.load_graph(graph)
        return self.loaded[graph]

    def ensure_sampler(self, num_steps: int) -> str:
        """The `num_steps` sampler graph exported first (by `export_sampler`, when given and the folder lacks it),
        then loaded; returns its name."""
        name = sampler_name(num_steps)
        if name not in self.loaded and self.export_sampler and not graph_file(self.onnx_dir, name).is_file():
            self.export_sampler(num_steps)
        self.graph(name)
        return name
