"""The network split into the four graphs that `export/` writes and the graph backends run, in this order:

    vision        pixel_values (images,3,S,S)                              -> image_embeds (images,P,D)  SigLIP + connector
    llm           inputs_embeds (batch,seq,D), attention_mask (batch,seq)  -> features (batch,seq,D)     Qwen3 + final RMSNorm
    vl            features (batch,seq,D)                                   -> vl_embeds (batch,seq,D)    vlln + VL self-attention
    sampler_s{N}  vl_embeds, state (batch,1,64), embodiment_id (batch,), noise (batch,16,32)
                                                                           -> actions (batch,16,32)      N Euler steps unrolled

Between vision and llm, the token-embedding lookup and the image/token merge (`merge_image_embeddings`) run outside
the graphs: a gather keeps the 151680-row embedding table out of every graph.
"""

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gr00t_fast.model.eagle import merge_image_embeddings
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.loading import EMBED_TOKENS

GRAPHS = ("vision", "llm", "vl", "sampler")
# graph kind -> (input names, output name)
GRAPH_IO: dict[str, tuple[tuple[str, ...], str]] = {
    "vision": (("pixel_values",), "image_embeds"),
    "llm": (("inputs_embeds", "attention_mask"), "features"),
    "vl": (("features",), "vl_embeds"),
    "sampler": (("vl_embeds", "state", "embodiment_id", "noise"), "actions"),
}
# What the chain needs of the PyTorch model besides the graphs: the embedding table of the lookup between vision and
# llm, and the tensor the model reads its device and dtype from (`load_model(..., only=GRAPH_HOST_TENSORS)`)
GRAPH_HOST_TENSORS = (EMBED_TOKENS, "action_head.future_tokens.weight")
REFERENCE_ACTIONS = "reference_actions.npy"  # in a cached export: fp32 eager's actions on `example_inputs`
GraphRunner = Callable[[str, dict[str, torch.Tensor]], torch.Tensor]  # (graph name, feeds) -> output


def sampler_name(num_steps: int) -> str:
    """The sampler graph's name: its step count is unrolled into it."""
    return f"sampler_s{num_steps}"


def graph_file(folder: str | Path, graph: str) -> Path:
    """Where an export folder keeps `graph`: `<folder>/<graph>/<graph>.onnx`, each graph in its own folder, so the
    external-data files of graphs over protobuf's 2 GB (full-size llm, samplers) never share a directory."""
    return Path(folder) / graph / f"{graph}.onnx"


def graph_kind(graph: str) -> str:
    """"sampler" for every `sampler_s{N}`, else the graph's own name."""
    return "sampler" if graph.startswith("sampler_s") else graph


class VisionGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.eagle = model.backbone.eagle_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.eagle.image_embeddings(pixel_values)


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
    """The PyTorch module of one graph, taking the graph's inputs positionally."""
    if graph_kind(graph) == "sampler":
        return SamplerGraph(model, int(graph.removeprefix("sampler_s")))
    return {"vision": VisionGraph, "llm": LLMGraph, "vl": VLGraph}[graph](model)


def run_graphs(run: GraphRunner, model: nn.Module, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The whole network as the chain of graphs, each executed by `run(graph, feeds)`.

    The graphs take an explicit (B, L) mask and a (B,) embodiment tensor: None / an int are filled in here.
    """
    ids = inputs.input_ids
    mask = torch.ones_like(ids) if inputs.attention_mask is None else inputs.attention_mask
    embodiment = inputs.embodiment_id
    if isinstance(embodiment, int):
        embodiment = torch.full((ids.shape[0],), embodiment, dtype=torch.long, device=ids.device)
    eagle = model.backbone.eagle_model
    image = run("vision", {"pixel_values": inputs.pixel_values})
    embeds = merge_image_embeddings(eagle.language_model.model.embed_tokens.weight, ids, image, eagle.image_token_index)
    features = run("llm", {"inputs_embeds": embeds, "attention_mask": mask})
    vl = run("vl", {"features": features})
    return run(sampler_name(num_steps), {"vl_embeds": vl, "state": inputs.state, "embodiment_id": embodiment, "noise": noise})


@torch.inference_mode()
def graph_inputs(model: nn.Module, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> dict[str, dict[str, torch.Tensor]]:
    """The feeds of every graph kind for one call, recorded while the eager graph modules run the chain."""
    feeds_by_kind: dict[str, dict[str, torch.Tensor]] = {}

    def record(graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds_by_kind[graph_kind(graph)] = feeds
        return graph_module(model, graph)(*(feeds[name] for name in GRAPH_IO[graph_kind(graph)][0]))

    run_graphs(record, model, inputs, noise, num_steps)
    return feeds_by_kind
