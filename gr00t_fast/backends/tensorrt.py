"""`tensorrt` backend: the graphs as TensorRT engines, fed with CUDA tensors in place (no host copies).

    make_backend("tensorrt", model, engine_dir="engines/so100_bf16")     # built by `gr00t-fast export tensorrt`

`load_policy(..., backend="tensorrt")` without a folder builds (or reuses from the cache) engines first
(`load_options`).
Shapes are checked against each engine's optimization profile before running, so a camera count, batch or
prompt length the engine was not built for is a clear error instead of TensorRT's "dimension mismatch".
"""

import json
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.backends.base import LoadRequest, cuda_missing, package_missing
from gr00t_fast.backends.graph import GraphBackend, given_folder
from gr00t_fast.model.graphs import sampler_name

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max) shapes


def check_shapes(graph: str, profile: Profile, shapes: dict[str, Shape]) -> None:
    """Raise a ValueError naming the input, its shape and the profile range when a shape falls outside it."""
    for name, shape in shapes.items():
        lo, _, hi = profile[name]
        if len(shape) != len(lo) or any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
            raise ValueError(
                f"{graph} input {name!r} has shape {tuple(shape)}, outside the engine profile min {lo} .. max {hi}; "
                "rebuild the engine with a wider --batch / --max_instruction_tokens range or the right --data_config"
            )


class TensorRTBackend(GraphBackend):
    """Runs the engines `gr00t-fast export tensorrt` built into `engine_dir` (its `manifest.json` lists them)."""

    name = "tensorrt"
    exports = ("tensorrt",)  # the `gr00t-fast export` target it runs

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        reasons = [r for r in (package_missing("tensorrt", "TensorRT", "tensorrt"), cuda_missing(device)) if r]
        return " and ".join(reasons) or None

    @classmethod
    def load_options(cls, model: torch.nn.Module, request: LoadRequest) -> dict[str, Any]:
        """The request's options with the engines' folder: the user's (`backend_dir`, or an `engine_dir` option),
        which must be a complete build from these weights, else those in the cache for this checkpoint, camera count
        and `precision` option (default bf16), built there first where one is missing."""
        options = dict(request.options)
        if not given_folder(cls, request, options, "engine_dir"):
            options["engine_dir"] = request.artifacts.engines(model, cls.name, options.pop("precision", "bf16"))
        return options

    @property
    def precision(self) -> str:
        return f"{self.manifest['precision']} engines"

    def __init__(self, model: torch.nn.Module, engine_dir: str | Path):
        import tensorrt as trt

        super().__init__(model)
        self.engine_dir = Path(engine_dir)
        manifest_path = self.engine_dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} is missing: build engines with `gr00t-fast export tensorrt`")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest["tensorrt"] != trt.__version__:
            raise RuntimeError(f"engines in {self.engine_dir} were built with TensorRT {self.manifest['tensorrt']}, "
                               f"this is {trt.__version__}: rebuild them")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.contexts, self.profiles = {}, {}, {}
        for graph, entry in self.manifest["graphs"].items():
            engine = runtime.deserialize_cuda_engine((self.engine_dir / "engines" / entry["engine"]).read_bytes())
            if engine is None:
                raise RuntimeError(f"cannot load {entry['engine']} (built for another GPU or TensorRT?)")
            self.engines[graph], self.contexts[graph] = engine, engine.create_execution_context()
            self.profiles[graph] = {k: tuple(tuple(s) for s in v) for k, v in entry["profile"].items()}
        self.trt = trt
        self.torch_dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                             trt.int64: torch.int64, trt.int32: torch.int32, trt.bool: torch.bool}

    def ensure_sampler(self, num_steps: int) -> str:
        name = sampler_name(num_steps)
        if name not in self.engines:
            raise ValueError(f"no {num_steps}-step sampler engine in {self.engine_dir} (has {sorted(self.engines)}); "
                             f"build it with `gr00t-fast export tensorrt --denoising_steps {num_steps}`")
        return name

    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        trt, engine, context = self.trt, self.engines[graph], self.contexts[graph]
        check_shapes(graph, self.profiles[graph], {k: tuple(v.shape) for k, v in feeds.items()})
        keep, output_name = [], None
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            torch_dtype = self.torch_dtypes[engine.get_tensor_dtype(name)]
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                tensor = feeds[name].to(self.device, torch_dtype).contiguous()
                context.set_input_shape(name, tuple(tensor.shape))
                keep.append(tensor)
                context.set_tensor_address(name, tensor.data_ptr())
            else:
                output_name, output_dtype = name, torch_dtype
        output = torch.empty(tuple(context.get_tensor_shape(output_name)), dtype=output_dtype, device=self.device)
        context.set_tensor_address(output_name, output.data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {graph}")
        return output
