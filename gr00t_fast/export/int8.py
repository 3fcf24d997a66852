"""INT8 graphs through ONNX Runtime static quantization, calibrated on sample observations.

Each graph is calibrated on its own real inputs: the intermediate tensors the fp32 model produces for the
calibration samples (pixels for `vision`, merged prompt embeddings for `llm`, backbone features for `vl`,
VL embeddings + state + noise for the sampler). The output is explicit Q/DQ ONNX with symmetric INT8
activations and per-channel weights, which ONNX Runtime runs on CPU and TensorRT builds as explicit-precision
INT8 engines. `action_error` reports what the quantization costs in action space.

What is quantized follows `--quantize int8` (`model.quantize`): the Linear layers in the transformer stacks' layers
and blocks (SigLIP, Qwen3, VL self-attention, DiT), weights per channel. A static scale per tensor cannot follow
what a per-token dynamic one does, and measured on NVIDIA's tiny checkpoint and its so100 cases (the arm's largest
action difference against fp32) these cannot be quantized statically without a large error, so they stay fp32:
- attention's activation x activation MatMuls (scores, probabilities x values): 7-9 deg from the LLM's alone;
- the per-embodiment encoders and decoder (their weights are gathered by embodiment, so ONNX Runtime quantizes
  them per tensor as activations): the action encoder's first layer reads the noisy actions themselves and alone
  moved the arm by 4-6 deg, by 67 deg where a later step's noisy actions exceeded the calibrated range by up to 24%
  (the batch-2 case);
- the sampler's DiT feed-forward output projections (their GELU input has outlier channels): 4 deg alone on the
  fitted demo head (`make-checkpoint --demo-task reach`), where all the quantized layers together cost ~1;
- the patch embedding (one MatMul over the patches), the connector and the DiT's output projections, outside those
  layers and blocks.
The calibration frames are smooth synthetic scenes, not noise: noise frames give SigLIP and the LLM activations
no camera frame gives (calibrated on them, the vision graph alone moved the arm by up to 23 deg).

`export int8 --calibration OBS.npz` (`gr00t-fast run --record_observations OBS.npz` writes one) adds the user's own
observations (`observation_samples`, through the policy's processor) beside them, never instead: the synthetic
samples' states and noise span the whole normalized range, and calibrated on simulated camera frames alone, one of
NVIDIA's cases (states beyond the recorded ones) moved the arm by 13.4 deg, against 4.2 with both. The error on
frames unlike the synthetic scenes is larger than on NVIDIA's cases, whose images resemble them: 6.7-7.0 deg on
held-out simulated frames against 3.6 (benchmarks/int8_calibration.py).
"""

import logging
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from gr00t_fast.backends import export_runner, fidelity, make_backend, reference_backend
from gr00t_fast.backends.graph import to_numpy
from gr00t_fast.model.graphs import graph_file, graph_inputs, graph_kind
# the synthetic calls live with the model's inputs (the torch backends' int8 fits them too); imported here by name
from gr00t_fast.model.inputs import INSTRUCTIONS, ModelInputs, Sample, calibration_inputs, scene  # noqa: F401
from gr00t_fast.policy.observations import read_observations

log = logging.getLogger(__name__)

QUANTIZED_OPS = ["MatMul", "Gemm"]  # with a weight initializer, in a transformer stack; all else stays fp32
STACK_LAYER = re.compile(r"/(layers|transformer_blocks)\.\d+/")  # SigLIP / Qwen3 layers, VL and DiT blocks
DIT_FF_OUT = re.compile(r"/transformer_blocks\.\d+/ff/net\.2(_\d+)?/")  # the sampler's FF output projections


def observation_samples(source: str | Path | dict, process: Callable[[dict], ModelInputs], config, n: int,
                        seed: int = 0) -> list[Sample]:
    """Up to `n` sample calls from a user's own observations (an .npz, `read_observations`, or a batched observation
    already read, e.g. from a recorded dataset; `export int8 --calibration`, `bench backends --observations`), evenly
    spaced, each through `process` (the policy's processor: frames resized and normalized as at inference), with
    seeded noise."""
    observation = source if isinstance(source, dict) else read_observations(source)
    path = "the recorded observations" if isinstance(source, dict) else source
    picks = np.unique(np.linspace(0, len(next(iter(observation.values()))) - 1, n).round().astype(int))
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in picks:
        try:
            inputs = process({key: value[i : i + 1] for key, value in observation.items()})
        except ValueError as e:
            raise ValueError(f"{path}, sample {i}: {e}") from None
        samples.append((inputs, torch.randn(1, config.action_horizon, config.max_action_dim, generator=gen)))
    return samples


def quantized_nodes(path: Path, graph: str) -> list[str]:
    """The nodes of `graph` (the ONNX file at `path`) to quantize: MatMul/Gemm with a weight initializer in a
    transformer stack, less the sampler's DiT feed-forward output projections (module docstring)."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    weights = {t.name for t in proto.graph.initializer}
    nodes = [n.name for n in proto.graph.node if n.op_type in QUANTIZED_OPS and n.input[1] in weights
             and STACK_LAYER.search(n.name) and not (graph_kind(graph) == "sampler" and DIT_FF_OUT.search(n.name))]
    if not nodes:  # ONNX Runtime reads an empty list as "every node"
        raise ValueError(f"{path}: no transformer-stack MatMul to quantize")
    return nodes


class GraphCalibrationReader:
    """`onnxruntime.quantization.CalibrationDataReader` over recorded graph inputs."""

    def __init__(self, feeds: list[dict[str, torch.Tensor]]):
        self.feeds = iter([{k: to_numpy(v) for k, v in feed.items()} for feed in feeds])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def graphs_in(folder: str | Path) -> list[str]:
    """Names of the graphs an export folder holds (`<folder>/<graph>/<graph>.onnx`)."""
    return sorted(p.stem for p in Path(folder).glob("*/*.onnx") if p.stem == p.parent.name)


def quantize_graphs(
    model: torch.nn.Module, onnx_dir: str | Path, out_dir: str | Path, calibration: list[Sample], num_steps: int,
    graphs: list[str] | None = None, progress: bool = True,
) -> Path:
    """Quantize `graphs` (default: every graph in `onnx_dir`) into `out_dir` (same layout), calibrated on
    `calibration`. Weights are written as external data (`<graph>.onnx.data`, one file per graph in its own
    folder): at full size the llm and sampler graphs are over protobuf's 2 GB. Weights take 7 bits (`reduce_range`):
    ONNX Runtime's int8 GEMM on CPUs without VNNI (AVX2, AVX512 before VNNI) adds byte pairs in 16 bits, which
    saturate with 8-bit weights: NVIDIA's tiny so100 cases moved the arm 11.4 deg there, within the 8-deg bound
    with 7 bits (an AMD EPYC with AVX2 only, 2026-11-25); graphs run wherever they are copied to."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CalibrationDataReader.register(GraphCalibrationReader)
    graphs = graphs or graphs_in(onnx_dir)
    if not graphs:
        raise FileNotFoundError(f"no ONNX graphs in {onnx_dir}: run `gr00t-fast export onnx` first")
    recorded = [graph_inputs(model, inputs, noise, num_steps) for inputs, noise in calibration]
    for graph in tqdm(graphs, desc="quantizing INT8", unit="graph", disable=not progress):
        target = graph_file(out_dir, graph)
        target.parent.mkdir(parents=True, exist_ok=True)
        prepared = target.with_name(f"{graph}.prep.onnx")
        quant_pre_process(graph_file(onnx_dir, graph), prepared, skip_symbolic_shape=True,  # shape inference, cleanup
                          save_as_external_data=True, all_tensors_to_one_file=True,
                          external_data_location=f"{prepared.name}.data")
        quantize_static(
            prepared, target, GraphCalibrationReader([r[graph_kind(graph)] for r in recorded]),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True, op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_quantize=quantized_nodes(prepared, graph), use_external_data_format=True,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        prepared.unlink()
        prepared.with_name(f"{prepared.name}.data").unlink()
    return Path(out_dir)


def action_error(model: torch.nn.Module, int8_dir: str | Path, evaluation: Sample, num_steps: int,
                 decode: Callable[[torch.Tensor], dict] | None = None) -> dict:
    """Max/mean absolute action difference of exported graphs (INT8 here, `export onnx`'s float32 too) run by the
    backend that checks INT8 exports (`export_runner`: ONNX Runtime) against fp32 eager PyTorch (`decode`: per action
    key too, in the policy's units, as `fidelity`)."""
    graphs = make_backend(export_runner("int8").name, model, onnx_dir=int8_dir)
    return fidelity(graphs, reference_backend(model), *evaluation, num_steps, decode)


def export_int8(
    model: torch.nn.Module, out_dir: str | Path, calibration: list[Sample], evaluation: Sample, num_steps: int,
    progress: bool = True, decode: Callable[[torch.Tensor], dict] | None = None,
) -> dict:
    """fp32 ONNX export (into a scratch folder), INT8 quantization into `out_dir`, and its action error (`decode`:
    per action key too, in the policy's units)."""
    from gr00t_fast.export.onnx import export_onnx

    out = Path(out_dir)
    fp32_dir = out / "fp32"
    export_onnx(model, fp32_dir, *calibration[0], num_steps, progress=progress)
    quantize_graphs(model, fp32_dir, out, calibration, num_steps, progress=progress)
    shutil.rmtree(fp32_dir)
    error = action_error(model, out, evaluation, num_steps, decode)
    log.info("INT8 action error vs fp32 eager: %s", error)
    return error
