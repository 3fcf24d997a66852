"""ONNX export of the N1.5 network as four graphs, each checked with `onnx.checker` and against PyTorch.

    vision          pixel_values (images,3,S,S)                         -> image_embeds (images,P,D)   SigLIP + connector
    llm             inputs_embeds (batch,seq,D), attention_mask (batch,seq) -> features (batch,seq,D)   Qwen3 + final RMSNorm
    vl              features (batch,seq,D)                               -> vl_embeds (batch,seq,D)    vlln + VL self-attention
    sampler_s{N}    vl_embeds, state (batch,1,64), embodiment_id (batch,), noise (batch,16,32)
                                                                         -> actions (batch,16,32)      N Euler steps unrolled

The token-embedding lookup and the image/token merge (`merge_image_embeddings`) stay outside the graphs:
a gather is free on the host side and keeps the 151680-row table out of every engine. Batch, image count
and sequence length are dynamic axes; the step count is baked into the sampler graph's name.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gr00t_fast.backends import Inputs, explicit_mask_and_ids, merge_image_embeddings

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is native from 17; TensorRT 10 parses it
PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class GraphSpec:
    """Input/output names and dynamic axes of one exported graph."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


SPECS = {
    "vision": GraphSpec(("pixel_values",), ("image_embeds",),
                        {"pixel_values": {0: "images"}, "image_embeds": {0: "images"}}),
    "llm": GraphSpec(("inputs_embeds", "attention_mask"), ("features",),
                     {name: {0: "batch", 1: "seq"} for name in ("inputs_embeds", "attention_mask", "features")}),
    "vl": GraphSpec(("features",), ("vl_embeds",), {name: {0: "batch", 1: "seq"} for name in ("features", "vl_embeds")}),
    "sampler": GraphSpec(("vl_embeds", "state", "embodiment_id", "noise"), ("actions",),
                         {"vl_embeds": {0: "batch", 1: "seq"}, "state": {0: "batch"}, "embodiment_id": {0: "batch"},
                          "noise": {0: "batch"}, "actions": {0: "batch"}}),
}


def sampler_name(num_steps: int) -> str:
    return f"sampler_s{num_steps}"


def spec(graph: str) -> GraphSpec:
    return SPECS["sampler" if graph.startswith("sampler_s") else graph]


# ------------------------------------------------------------------------------------- graph modules
class VisionGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.eagle = model.backbone.eagle_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.eagle.mlp1(self.eagle.vision_model(pixel_values))


class LLMGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.llm = model.backbone.eagle_model.language_model.model

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.llm(inputs_embeds, attention_mask)


class VLGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.head = model.action_head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head.encode_vl(features)


class SamplerGraph(nn.Module):
    def __init__(self, model: nn.Module, num_steps: int):
        super().__init__()
        self.head, self.num_steps = model.action_head, num_steps

    def forward(self, vl_embeds, state, embodiment_id, noise) -> torch.Tensor:
        return self.head.sample(vl_embeds, state, embodiment_id, noise, self.num_steps)


def graph_module(model: nn.Module, graph: str) -> nn.Module:
    if graph.startswith("sampler_s"):
        return SamplerGraph(model, int(graph.removeprefix("sampler_s")))
    return {"vision": VisionGraph, "llm": LLMGraph, "vl": VLGraph}[graph](model)


@torch.inference_mode()
def graph_inputs(model: nn.Module, inputs: Inputs) -> dict[str, dict[str, torch.Tensor]]:
    """The input tensors of every graph for one set of model inputs (the intermediates of the eager model)."""
    eagle, head = model.backbone.eagle_model, model.action_head
    cfg = model.config
    pixels = inputs["pixel_values"]
    image = VisionGraph(model)(pixels)
    table = eagle.language_model.model.embed_tokens.weight
    embeds = merge_image_embeddings(table, inputs["input_ids"], image, cfg.image_token_index)
    mask, emb = explicit_mask_and_ids(inputs["input_ids"], inputs["attention_mask"], inputs["embodiment_id"])
    features = eagle.language_model.model(embeds, mask)
    vl = head.encode_vl(features)
    return {
        "vision": {"pixel_values": pixels},
        "llm": {"inputs_embeds": embeds, "attention_mask": mask},
        "vl": {"features": features},
        "sampler": {"vl_embeds": vl, "state": inputs["state"], "embodiment_id": emb, "noise": inputs["noise"]},
    }


def export_graph(model: nn.Module, graph: str, example: dict[str, torch.Tensor], path: Path, opset: int = OPSET) -> Path:
    """Trace one graph to `path` (weights beside it as external data when the graph exceeds 2 GB)."""
    s = spec(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = graph_module(model, graph).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-derived constants (rope tables, masks)
        torch.onnx.export(
            module, tuple(example[name] for name in s.inputs), str(path), dynamo=False,
            input_names=list(s.inputs), output_names=list(s.outputs), dynamic_axes=s.dynamic_axes,
            opset_version=opset, do_constant_folding=True,
        )
    return path


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


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


@torch.inference_mode()
def validate_graph(model: nn.Module, graph: str, path: Path, example: dict[str, torch.Tensor]) -> float:
    """`onnx.checker` on the file, then ONNX Runtime against PyTorch on `example`: the max abs difference."""
    import onnx

    onnx.checker.check_model(str(path))  # the path form also handles >2 GB graphs with external data
    want = graph_module(model, graph)(*(example[name] for name in spec(graph).inputs)).float()
    (got,) = ort_session(path, ["CPUExecutionProvider"]).run(None, {k: to_numpy(v) for k, v in example.items()})
    if got.shape != tuple(want.shape):
        raise RuntimeError(f"{path.name}: ONNX output shape {got.shape} != PyTorch {tuple(want.shape)}")
    return float(np.abs(got - to_numpy(want)).max())


def export_onnx(
    model: nn.Module,
    out_dir: str | Path,
    inputs: Inputs,
    *,
    graphs: tuple[str, ...] | None = None,
    validate: bool = True,
    atol: float = PARITY_ATOL,
    progress: bool = True,
) -> dict[str, dict]:
    """Export (and validate) the graphs for `inputs["num_steps"]` into `out_dir`.

    Returns {graph: {"path", "max_abs_diff"}}; raises when a graph differs from PyTorch by more than `atol`.
    The model should be float32: the graphs are the precision-neutral source for ORT and TensorRT builds.
    """
    if model.dtype != torch.float32:
        raise ValueError(f"export the float32 model (load_model(..., dtype=torch.float32)), got {model.dtype}")
    out = Path(out_dir)
    examples = graph_inputs(model, inputs)
    graphs = graphs or ("vision", "llm", "vl", sampler_name(int(inputs["num_steps"])))
    report = {}
    for graph in tqdm(graphs, desc="exporting ONNX", unit="graph", disable=not progress):
        example = examples["sampler" if graph.startswith("sampler_s") else graph]
        path = export_graph(model, graph, example, out / f"{graph}.onnx")
        report[graph] = {"path": str(path)}
        if validate:
            diff = validate_graph(model, graph, path, example)
            report[graph]["max_abs_diff"] = diff
            log.info("%s: max |onnx - torch| = %.3g", graph, diff)
            if diff > atol:
                raise RuntimeError(f"{path.name} differs from PyTorch by {diff:.3g} > {atol:g}")
    return report
