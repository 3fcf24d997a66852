"""ONNX export of the four graphs of `gr00t_fast.model.graphs`, each checked with `onnx.checker` and, through the
`onnxruntime` backend's own session, against PyTorch.

Batch, image count and sequence length are dynamic axes; the step count is baked into the sampler graph's name.
Each graph is written to its own folder (`graph_file`): at full size the llm and sampler graphs are over protobuf's
2 GB and keep their weights beside them as external data.
"""

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gr00t_fast.backends import reference_backend
from gr00t_fast.backends.graph import to_numpy
from gr00t_fast.backends.onnxruntime import ort_session
from gr00t_fast.export.manifest import IncompleteArtifacts, check_artifacts, write_manifest
from gr00t_fast.runtime.atomic import scratch, staged
from gr00t_fast.runtime.cache import cache_dir, checkpoint_fingerprint, locked
from gr00t_fast.model.graphs import GRAPH_IO, REFERENCE_ACTIONS, graph_file, graph_inputs, graph_kind, graph_module, sampler_name
from gr00t_fast.model.inputs import ModelInputs, example_inputs
from gr00t_fast.runtime.progress import redrawn

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is native from 17; TensorRT 10 parses it
PARITY_ATOL = 1e-4
# graph kind -> {tensor name: {axis: dynamic axis name}}
DYNAMIC_AXES: dict[str, dict[str, dict[int, str]]] = {
    "vision": {"pixel_values": {0: "images"}, "image_embeds": {0: "images"}},
    "llm": {name: {0: "batch", 1: "seq"} for name in ("inputs_embeds", "attention_mask", "features")},
    "vl": {name: {0: "batch", 1: "seq"} for name in ("features", "vl_embeds")},
    "sampler": {"vl_embeds": {0: "batch", 1: "seq"}, "state": {0: "batch"}, "embodiment_id": {0: "batch"},
                "noise": {0: "batch"}, "actions": {0: "batch"}},
}


def export_graph(model: nn.Module, graph: str, example: dict[str, torch.Tensor], path: Path, opset: int = OPSET) -> Path:
    """Trace one graph to `path` (weights beside it as external data when the graph exceeds 2 GB)."""
    kind = graph_kind(graph)
    inputs, output = GRAPH_IO[kind]
    path.parent.mkdir(parents=True, exist_ok=True)
    module = graph_module(model, graph).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-derived constants (rope tables, masks)
        torch.onnx.export(
            module, tuple(example[name] for name in inputs), str(path), dynamo=False,
            input_names=list(inputs), output_names=[output], dynamic_axes=DYNAMIC_AXES[kind],
            opset_version=opset, do_constant_folding=True,
        )
    return path


@torch.inference_mode()
def validate_graph(model: nn.Module, graph: str, path: Path, example: dict[str, torch.Tensor]) -> float:
    """`onnx.checker` on the file, then ONNX Runtime against PyTorch on `example`: the max abs difference."""
    import onnx

    onnx.checker.check_model(str(path))  # the path form also handles >2 GB graphs with external data
    want = graph_module(model, graph)(*(example[name] for name in GRAPH_IO[graph_kind(graph)][0])).float()
    (got,) = ort_session(path, ["CPUExecutionProvider"]).run(None, {k: to_numpy(v) for k, v in example.items()})
    if got.shape != tuple(want.shape):
        raise RuntimeError(f"{path.name}: ONNX output shape {got.shape} != PyTorch {tuple(want.shape)}")
    return float(np.abs(got - to_numpy(want)).max())


def export_onnx(
    model: nn.Module,
    out_dir: str | Path,
    inputs: ModelInputs,
    noise: torch.Tensor,
    num_steps: int,
    *,
    graphs: tuple[str, ...] | None = None,
    validate: bool = True,
    atol: float = PARITY_ATOL,
    progress: bool = True,
) -> dict[str, dict]:
    """Export (and validate) the graphs for `num_steps` denoising steps into `out_dir`, traced on one example call.

    Returns {graph: {"path", "max_abs_diff"}}; raises when a graph differs from PyTorch by more than `atol`.
    The model must be float32: the graphs are the precision-neutral source for ORT and TensorRT builds.
    """
    if model.dtype != torch.float32:
        raise ValueError(f"export the float32 model (load_model(..., dtype=torch.float32)), got {model.dtype}")
    out = Path(out_dir)
    examples = graph_inputs(model, inputs, noise, num_steps)
    graphs = graphs or ("vision", "llm", "vl", sampler_name(num_steps))
    report = {}
    with redrawn(tqdm(graphs, desc="exporting ONNX", unit="graph", disable=not progress)) as bar:
        for graph in bar:  # one graph takes minutes at full size: the bar names it and its elapsed time moves
            bar.set_postfix_str(graph)
            example = examples[graph_kind(graph)]
            path = export_graph(model, graph, example, graph_file(out, graph))
            report[graph] = {"path": str(path)}
            if validate:
                diff = validate_graph(model, graph, path, example)
                report[graph]["max_abs_diff"] = diff
                log.info("%s: max |onnx - torch| = %.3g", graph, diff)
                if diff > atol:
                    raise RuntimeError(f"{path.name} differs from PyTorch by {diff:.3g} > {atol:g}")
    return report


def cached_onnx_export(model: nn.Module, model_path: str | Path) -> tuple[Path, Callable[[int], None]]:
    """(the folder, the function exporting a sampler for another step count into it) of a checkpoint's fp32 graphs,
    exported once into the cache (a folder per weights fingerprint, by content, and gr00t-fast version, with its
    manifest, and fp32 eager's actions on the example call, `REFERENCE_ACTIONS`). A folder without a complete
    manifest (an export killed midway, a truncated file) is exported again, whole, and renamed into place. The
    folder is checked and written by one process at a time (`runtime.cache.locked`): a second one loading the same
    checkpoint at once waits for the first one's export, then uses it. A model in another precision or on another
    device, or one that holds only the graphs' host tensors (`load_model(..., only=...)`), is exported from an fp32 CPU
    copy loaded for each export and freed after it."""
    from gr00t_fast import __version__
    from gr00t_fast.model import load_model
    from gr00t_fast.model.loading import is_complete

    fingerprint = checkpoint_fingerprint(model_path)
    folder = cache_dir() / "onnx" / f"{fingerprint}-{__version__}"

    def export(num_steps: int, into: Path, graphs: tuple[str, ...] | None = None) -> None:
        fp32 = model if (model.dtype, model.device.type) == (torch.float32, "cpu") and is_complete(model) else \
            load_model(model_path, device="cpu", dtype=torch.float32, eagle_path=model.config.eagle_dir)  # freed after
        inputs, noise = example_inputs(fp32.config)
        export_onnx(fp32, into, inputs, noise, num_steps, graphs=graphs)
        if graphs is None:  # what fp32 eager answers to the example call: the yardstick of a precision at load
            with torch.inference_mode():
                actions = reference_backend(fp32)(inputs, noise, num_steps)
            np.save(into / REFERENCE_ACTIONS, actions.float().numpy())

    def add_sampler(num_steps: int) -> None:  # each graph folder renamed in whole, then the manifest rewritten
        with locked(folder), scratch(folder) as tmp:
            if graph_file(folder, sampler_name(num_steps)).is_file():  # added by another process meanwhile
                return
            export(num_steps, tmp, (sampler_name(num_steps),))
            for graph_dir in tmp.iterdir():
                shutil.rmtree(folder / graph_dir.name, ignore_errors=True)
                os.replace(graph_dir, folder / graph_dir.name)
            write_manifest(folder, target="onnx", checkpoint=model_path, fingerprint=fingerprint, options={})

    with locked(folder):
        try:
            check_artifacts(folder, ("onnx",), model_path, fingerprint)
        except IncompleteArtifacts as e:
            if folder.exists():
                log.warning("exporting the cached ONNX graphs again: %s", e)
            with staged(folder, replace=True) as tmp:
                export(model.config.num_inference_timesteps, tmp)
                write_manifest(tmp, target="onnx", checkpoint=model_path, fingerprint=fingerprint, options={})
    return folder, add_sampler
