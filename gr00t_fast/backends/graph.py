"""What the backends running exported graphs share: the graph chain of `gr00t_fast.model.graphs`, timed per part."""

from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gr00t_fast.backends.base import Backend, StageClock
from gr00t_fast.model.graphs import graph_file, run_graphs, sampler_name
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


class GraphBackend(Backend):
    """Runs vision -> image/token merge -> llm -> vl -> sampler_s{N}, one exported graph at a time.

    Subclasses implement `run(graph, feeds)` and `ensure_sampler(num_steps)` (the sampler graph's name).
    """

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


def onnx_sampler(onnx_dir: Path, num_steps: int, loaded: dict[str, Any], load: Callable[[str], Any],
                 export_sampler: Callable[[int], None] | None) -> str:
    """`ensure_sampler` of a backend reading an ONNX folder: the `num_steps` sampler graph exported first (by
    `export_sampler`, when given and the folder lacks it), then loaded; returns its name."""
    name = sampler_name(num_steps)
    if name not in loaded and export_sampler and not graph_file(onnx_dir, name).is_file():
        export_sampler(num_steps)
    load(name)
    return name
