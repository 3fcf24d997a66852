"""INT8 graphs through ONNX Runtime static quantization, calibrated on sample observations.

Each graph is calibrated on its own real inputs: the intermediate tensors the fp32 model produces for the
calibration samples (pixels for `vision`, merged prompt embeddings for `llm`, backbone features for `vl`,
VL embeddings + state + noise for the sampler). The output is explicit Q/DQ ONNX with symmetric INT8
activations and per-channel weights, which ONNX Runtime runs on CPU and TensorRT builds as explicit-precision
INT8 engines. `action_error` reports what the quantization costs in action space.
"""

import logging
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from gr00t_fast.backends import fidelity
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend, to_numpy
from gr00t_fast.model.graphs import graph_file, graph_inputs, graph_kind
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.inputs import example_inputs

log = logging.getLogger(__name__)

QUANTIZED_OPS = ["MatMul", "Gemm", "Conv"]  # the weight-heavy ops; norms, softmax and residual adds stay fp32


INSTRUCTIONS = (
    "Pick up the red cube and put it in the box.", "Place the block in the bowl.", "Fold the napkin in half.",
    "Open the drawer and take out the spoon.", "Stack the yellow cup on the blue plate.",
    "Move the pen to the left side of the table.",
)


Sample = tuple[ModelInputs, torch.Tensor]  # model inputs and noise of one call


def calibration_inputs(config, n: int, cameras: int = 1, seed: int = 0) -> list[Sample]:
    """`n` sample calls: varied instructions, pixels, states and noise."""
    return [example_inputs(config, cameras=cameras, seed=seed + i, instructions=[INSTRUCTIONS[i % len(INSTRUCTIONS)]])
            for i in range(n)]


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
    folder): at full size the llm and sampler graphs are over protobuf's 2 GB."""
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
            per_channel=True, op_types_to_quantize=QUANTIZED_OPS, use_external_data_format=True,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        prepared.unlink()
        prepared.with_name(f"{prepared.name}.data").unlink()
    return Path(out_dir)


def action_error(model: torch.nn.Module, int8_dir: str | Path, evaluation: Sample, num_steps: int) -> dict:
    """Max/mean absolute action difference of the INT8 graphs (ONNX Runtime) against fp32 eager PyTorch."""
    return fidelity(OnnxRuntimeBackend(model, onnx_dir=int8_dir), TorchBackend(model), *evaluation, num_steps)


def export_int8(
    model: torch.nn.Module, out_dir: str | Path, calibration: list[Sample], evaluation: Sample, num_steps: int,
    progress: bool = True,
) -> dict:
    """fp32 ONNX export (into a scratch folder), INT8 quantization into `out_dir`, and its action error."""
    from gr00t_fast.export.onnx import export_onnx

    out = Path(out_dir)
    fp32_dir = out / "fp32"
    export_onnx(model, fp32_dir, *calibration[0], num_steps, progress=progress)
    quantize_graphs(model, fp32_dir, out, calibration, num_steps, progress=progress)
    shutil.rmtree(fp32_dir)
    error = action_error(model, out, evaluation, num_steps)
    log.info("INT8 action error vs fp32 eager: %s", error)
    return error
