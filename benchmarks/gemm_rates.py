"""What each engine's int8 GEMM gives on this CPU against float32, at the full-size model's shapes: the ceiling a
`--quantize int8` call can reach before any of its other costs.

Per shape (rows x inner x columns: an LLM projection over one camera's prompt, SigLIP's feed-forward, the DiT's
feed-forward at its 49 rows), each side the fastest of `--reps` calls after one to warm up, a library's two sides
alternating, each library in a process of its own, ONNX Runtime's sessions not spinning (alternating between two
sessions whose idle threads spun, each ran at 55-70% of its rate), on `--threads` threads (2 by default) in both:
    torch float32    `F.linear` (MKL's GEMM), what a float32 model runs unpacked
    torch float32 packed   oneDNN's GEMM on the weight packed once (`gr00t_fast.model.packed`), what the eager float32
                     model runs on a CPU without AVX-512 (and the float layers of an int8 one)
    torch int8       the engine of this CPU's class (`gr00t_fast.model.quantize.int8_engine`; its verdict, or why it
                     refuses int8 here, is recorded): FBGEMM's `quantized::linear_dynamic` without VNNI or AMX
                     (activations quantized per call inside it, 7 bits as `QuantizedLinear` has them), else
                     oneDNN's packed u8s8 GEMM (`onednn_int8_mm`, the activations' quantization not counted)
    onnxruntime float32 / u8s8   MLAS: a MatMul, and DynamicQuantizeLinear + MatMulInteger (u8 activations, s8
                     weights; the dequantization not counted)
Rates in GFLOP/s for float32 and GOP/s for int8 (2 x rows x inner x columns per call either way).

    python benchmarks/gemm_rates.py --out benchmarks/results/cpu/gemm_rates_<cpu class>_<date>.json
"""

import argparse
import json
import subprocess
import sys
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.model.bf16_speed import fastest_s
from gr00t_fast.model.packed import PackedLinear
from gr00t_fast.model.quantize import (FBGEMM_REDUCE_RANGE, ONEDNN_ZERO_POINT, fbgemm_pack, int8_engine, int8_units,
                                       onednn_int8_mm, onednn_pack)

SHAPES = {"LLM projection": (320, 2048, 2048), "LLM feed-forward up": (320, 2048, 6144),
          "LLM feed-forward down": (320, 6144, 2048), "SigLIP feed-forward up": (256, 1152, 4304),
          "DiT feed-forward up": (49, 1536, 6144), "DiT projection": (49, 1536, 1536)}

LIBRARIES = ("torch", "onnxruntime")


def onnx_session(nodes: list, inputs: list, output, weight: np.ndarray, threads: int):
    import onnxruntime
    from onnx import helper, numpy_helper

    graph = helper.make_graph(nodes, "gemm", inputs, [output], [numpy_helper.from_array(weight, "w")])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # each session has threads of its own: spinning after its call, they would take the other side's cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def onnx_calls(x: np.ndarray, weight: np.ndarray, threads: int) -> dict[str, Callable[[], object]]:
    """ONNX Runtime's float32 MatMul and its u8s8 MatMulInteger on `x` (rows, in) and `weight` (in, out)."""
    from onnx import TensorProto, helper

    rows, width = x.shape
    given = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])]
    f32 = onnx_session([helper.make_node("MatMul", ["x", "w"], ["y"])], given,
                       helper.make_tensor_value_info("y", TensorProto.FLOAT, None), weight, threads)
    levels = np.clip(np.round(weight / np.abs(weight).max() * 127), -127, 127).astype(np.int8)
    u8s8 = onnx_session([helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                         helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["y"])], given,
                        helper.make_tensor_value_info("y", TensorProto.INT32, None), levels, threads)
    return {"onnxruntime float32": lambda: f32.run(None, {"x": x}),
            "onnxruntime u8s8": lambda: u8s8.run(None, {"x": x})}


def torch_calls(x: torch.Tensor, weight: torch.Tensor, engine: str) -> dict[str, Callable[[], object]]:
    """torch's float32 Linear, unpacked and packed for oneDNN, and the int8 GEMM of `engine` on the same operands."""
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    levels = (weight / scale).round().to(torch.int8)
    if engine == "fbgemm":
        packed = fbgemm_pack(levels, scale)
        int8 = lambda: torch.ops.quantized.linear_dynamic(x, packed, FBGEMM_REDUCE_RANGE)  # noqa: E731
    else:
        packed, row_levels = onednn_pack(levels), torch.randint(0, 256, x.shape, dtype=torch.uint8)
        zeros = torch.zeros(len(weight), dtype=torch.long)
        int8 = lambda: onednn_int8_mm(row_levels, packed, scale.reshape(-1), zeros)  # noqa: E731
    packed_linear = PackedLinear.from_weight(weight)
    return {"torch float32": lambda: F.linear(x, weight), "torch float32 packed": lambda: packed_linear(x),
            f"torch int8 ({engine})": int8}


def rates(library: str, threads: int, reps: int) -> list[dict]:
    """Each shape's rates on `library`'s two sides, in this process."""
    torch.set_num_threads(threads)
    engine = "fbgemm" if int8_units() is None else "onednn"
    generator = torch.Generator().manual_seed(0)
    shapes = []
    for label, (rows, width, columns) in SHAPES.items():
        x = torch.randn(rows, width, generator=generator)
        weight = torch.randn(columns, width, generator=generator) / width**0.5
        calls = torch_calls(x, weight, engine) if library == "torch" else \
            onnx_calls(x.numpy(), weight.t().contiguous().numpy(), threads)
        ops = 2 * rows * width * columns
        shapes.append({"label": label, "shape": [rows, width, columns],
                       "rates": {name: ops / seconds / 1e9 for name, seconds in fastest_s(calls, reps).items()}})
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--library", choices=LIBRARIES, help="only this library, its rates printed as JSON")
    parser.add_argument("--out", help="the result file (JSON); required without --library")
    args = parser.parse_args()
    if args.threads < 1 or args.reps < 1:
        parser.error("--threads and --reps must be at least 1")
    if args.library:
        print(json.dumps(rates(args.library, args.threads, args.reps)))
        return
    if not args.out:
        parser.error("--out is required")
    torch.set_num_threads(args.threads)
    try:
        verdict = str(int8_engine("cpu"))
    except ValueError as e:  # where int8 does not pay: the rates say why
        verdict = str(e)
    shapes = None
    for library in LIBRARIES:  # each in a process of its own
        measured = json.loads(subprocess.run([sys.executable, __file__, "--library", library, "--threads",
                                              str(args.threads), "--reps", str(args.reps)], check=True,
                                             capture_output=True, text=True).stdout)
        shapes = measured if shapes is None else [{**a, "rates": {**a["rates"], **b["rates"]}}
                                                  for a, b in zip(shapes, measured)]
    for shape in shapes:
        rows, width, columns = shape["shape"]
        print(f"{shape['label']} {rows}x{width}x{columns}: "
              + ", ".join(f"{k} {v:.0f}" for k, v in shape["rates"].items()), flush=True)
    write_result(args.out, int8_engine=verdict, threads=args.threads, reps=args.reps, shapes=shapes)


if __name__ == "__main__":
    main()
