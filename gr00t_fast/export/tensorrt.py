"""TensorRT engines from the exported ONNX graphs: shape profiles from the data config, a keyed engine cache.

Upstream N1.5 deployments fail with "dimension mismatch" when the camera count or the batch differs from
the one the engine was built for. Here every engine's optimization profile is derived from the data config
(cameras -> images per sample and prompt length, measured with the real tokenizer on the real prompt, plus a
margin for the instruction) and a batch range, and the runtime checks shapes against the profile before
running. Engines are cached under a key of checkpoint fingerprint, graph, profile, precision, GPU and
TensorRT version, so a changed checkpoint, shape range, precision, GPU or TensorRT never reuses a stale engine.

Precisions: fp32, fp16, bf16 (builder flags on the fp32 graphs); int8 (explicit Q/DQ graphs calibrated with
ONNX Runtime, see `export.int8`); fp8 (Q/DQ graphs from NVIDIA ModelOpt, which must be installed). The builder
flags are TensorRT 10's (`tensorrt>=10,<11`): TensorRT 11 removed them in favour of strongly typed networks.
"""

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from gr00t_fast.backends import export_runner
from gr00t_fast.backends.tensorrt import Profile, Shape
from gr00t_fast.export.manifest import write_manifest
from gr00t_fast.runtime.atomic import write_atomic
from gr00t_fast.runtime.cache import checkpoint_fingerprint
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.graphs import graph_file, graph_inputs, graph_kind, sampler_name
from gr00t_fast.model.inputs import EXAMPLE_INSTRUCTION, example_inputs
from gr00t_fast.model.tokenizer import PromptTokenizer

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
TENSORRT_MAJOR = 10  # `tensorrt>=10,<11`: the builder flags below were removed in TensorRT 11
# precision -> TensorRT 10 builder flags (int8 / fp8: explicit Q/DQ graphs, other layers in fp16)
PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "bf16": ("BF16",), "int8": ("INT8", "FP16"), "fp8": ("FP8", "FP16")}
INSTRUCTION_MARGIN = 64  # tokens allowed for the instruction beyond the empty one


# ------------------------------------------------------------------------------------------ profiles
def prompt_length_range(config: Gr00tConfig, cameras: int, margin: int = INSTRUCTION_MARGIN) -> tuple[int, int, int]:
    """(min, opt, max) prompt tokens for `cameras` images: the prompt with an empty instruction, with a
    typical one, and the empty one plus `margin` instruction tokens (1 camera at full size: ~291 + instruction)."""
    tokenizer = PromptTokenizer.for_model(config)
    shortest = len(tokenizer.encode("", cameras))
    typical = len(tokenizer.encode(EXAMPLE_INSTRUCTION, cameras))
    return shortest, max(shortest, typical), shortest + margin


def optimization_profiles(
    config: Gr00tConfig, cameras: int, batch: tuple[int, int, int], prompt: tuple[int, int, int], num_steps: int
) -> dict[str, Profile]:
    """Min/opt/max input shapes of every graph for a (min, opt, max) batch and prompt-length range."""
    if not (1 <= batch[0] <= batch[1] <= batch[2]) or not (1 <= prompt[0] <= prompt[1] <= prompt[2]):
        raise ValueError(f"ranges must satisfy 1 <= min <= opt <= max, got batch {batch} and prompt {prompt}")
    D, S = config.backbone_embedding_dim, config.image_size
    H, A = config.action_horizon, config.max_action_dim

    def shapes(make) -> tuple[Shape, Shape, Shape]:
        return tuple(make(b, length) for b, length in zip(batch, prompt))

    return {
        "vision": {"pixel_values": shapes(lambda b, n: (b * cameras, 3, S, S))},
        "llm": {"inputs_embeds": shapes(lambda b, n: (b, n, D)), "attention_mask": shapes(lambda b, n: (b, n))},
        "vl": {"features": shapes(lambda b, n: (b, n, D))},
        sampler_name(num_steps): {
            "vl_embeds": shapes(lambda b, n: (b, n, D)),
            "state": shapes(lambda b, n: (b, 1, config.max_state_dim)),
            "embodiment_id": shapes(lambda b, n: (b,)),
            "noise": shapes(lambda b, n: (b, H, A)),
        },
    }


# --------------------------------------------------------------------------------------- cache keys
def engine_cache_key(
    checkpoint: str, graph: str, profile: Profile, precision: str, gpu: str, compute_capability: str, trt_version: str
) -> str:
    """Key of one engine: any change of checkpoint, graph, shapes, precision, GPU or TensorRT changes it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    payload = dict(checkpoint=checkpoint, graph=graph, precision=precision, gpu=gpu, sm=compute_capability,
                   trt=trt_version, profile={k: [list(s) for s in v] for k, v in sorted(profile.items())})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


# the lowest compute capability whose tensor cores run a precision (fp32 runs everywhere): bf16 from Ampere (Jetson
# Orin is 8.7), fp8 from Ada / Hopper (8.9, 9.0; Orin has no FP8), int8 and fp16 from Turing
MIN_CAPABILITY = {"fp16": (7, 5), "int8": (7, 5), "bf16": (8, 0), "fp8": (8, 9)}


def precision_error(precision: str, gpu: str, capability: str) -> str | None:
    """Why `precision` cannot run on `gpu` (compute capability "major.minor"), or None."""
    need = MIN_CAPABILITY.get(precision)
    have = tuple(int(v) for v in capability.split("."))
    if need is None or have >= need:
        return None
    usable = [p for p in PRECISIONS if have >= MIN_CAPABILITY.get(p, (0, 0))]
    return (f"--precision {precision} needs compute capability {need[0]}.{need[1]} or newer; {gpu} has {capability} "
            f"(it runs {', '.join(usable)})")


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of the current CUDA device."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


# ------------------------------------------------------------------------------------------- builder
def _progress_monitor(trt):
    """A tqdm bar per top-level builder phase (TensorRT's IProgressMonitor)."""
    from tqdm import tqdm

    class TqdmMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                self.bars[phase_name] = tqdm(total=num_steps, desc=f"  {phase_name}", leave=False)

        def step_complete(self, phase_name, step):
            if phase_name in self.bars:
                self.bars[phase_name].update(1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmMonitor()


def check_tensorrt_version(version: str) -> None:
    """Engines are built with TensorRT 10's precision builder flags, which TensorRT 11 removed (strong typing only)."""
    if version.split(".")[0] != str(TENSORRT_MAJOR):
        raise RuntimeError(f"gr00t-fast builds engines with TensorRT {TENSORRT_MAJOR} (TensorRT 11 removed the precision "
                           f"builder flags it uses), this is TensorRT {version}: pip install 'tensorrt>={TENSORRT_MAJOR},<11'")


def builder_config(trt, builder, network, profile: Profile, precision: str, workspace_gb: float, timing_cache: bytes):
    """TensorRT 10 builder config: workspace, the precision's builder flags, one optimization profile covering
    every network input, a timing cache."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    if inputs != set(profile):
        raise ValueError(f"network inputs {sorted(inputs)} do not match the profile's {sorted(profile)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for flag in PRECISION_FLAGS[precision]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    config.set_timing_cache(config.create_timing_cache(timing_cache), ignore_mismatch=False)
    return config


def build_engine(
    onnx_path: Path, engine_path: Path, profile: Profile, precision: str, *,
    timing_cache: Path | None = None, workspace_gb: float = 8.0, progress: bool = True,
) -> Path:
    """Parse `onnx_path` (external data beside it), build a serialized engine for one optimization profile, write it
    to `engine_path`."""
    import tensorrt as trt

    check_tensorrt_version(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}:\n{errors}")
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    try:
        config = builder_config(trt, builder, network, profile, precision, workspace_gb, cache_bytes)
    except ValueError as e:
        raise ValueError(f"{onnx_path.name}: {e}") from None
    if progress:
        monitor = _progress_monitor(trt)  # held here: it must outlive the build
        config.progress_monitor = monitor
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); see the log above")
    write_atomic(engine_path, bytes(serialized))  # a killed build leaves no half engine under the cached name
    if timing_cache is not None:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    log.info("built %s (%s) in %.0f s", engine_path.name, precision, time.perf_counter() - start)
    return engine_path


def quantize_fp8(onnx_path: Path, out_path: Path, calibration: dict[str, np.ndarray]) -> Path:
    """Q/DQ FP8 graph with NVIDIA ModelOpt (`modelopt.onnx.quantization.quantize`), weights as external data."""
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError:
        raise RuntimeError("FP8 engines need NVIDIA ModelOpt: pip install 'nvidia-modelopt[onnx]'") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quantize(onnx_path=str(onnx_path), quantize_mode="fp8", calibration_data=calibration, output_path=str(out_path),
             use_external_data_format=True)
    return out_path


def graphs_to_build(model_path: str | Path, out: Path, graphs: list[str], precision: str, batch: int, cameras: int,
                    num_steps: int, eagle_path: str | Path | None, progress: bool) -> Path:
    """The ONNX folder to build `graphs` from: the fp32 model loaded and exported, then quantized to INT8 Q/DQ
    (ONNX Runtime) or FP8 Q/DQ (ModelOpt) when asked; each graph in its own folder."""
    import torch

    from gr00t_fast.backends.graph import to_numpy
    from gr00t_fast.export.onnx import export_onnx
    from gr00t_fast.model import load_model

    model = load_model(model_path, device="cpu", dtype=torch.float32, eagle_path=eagle_path)
    inputs, noise = example_inputs(model.config, batch=batch, cameras=cameras)
    onnx_dir = out / "onnx"
    export_onnx(model, onnx_dir, inputs, noise, num_steps, graphs=tuple(graphs), progress=progress)
    if precision == "int8":
        from gr00t_fast.export.int8 import quantize_graphs
        from gr00t_fast.model.inputs import calibration_inputs

        calibration = calibration_inputs(model.config, 8, cameras)
        return quantize_graphs(model, onnx_dir, out / "onnx_int8", calibration, num_steps, graphs, progress)
    if precision == "fp8":
        feeds = graph_inputs(model, inputs, noise, num_steps)
        for graph in graphs:
            quantize_fp8(graph_file(onnx_dir, graph), graph_file(out / "onnx_fp8", graph),
                         {k: to_numpy(v) for k, v in feeds[graph_kind(graph)].items()})
        return out / "onnx_fp8"
    return onnx_dir


def build_engines(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    cameras: int = 1,
    batch: tuple[int, int, int] = (1, 1, 1),
    num_steps: int | None = None,
    precision: str = "bf16",
    instruction_margin: int = INSTRUCTION_MARGIN,
    eagle_path: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Engines for every graph in `out_dir/engines`, looked up in that cache first (key: checkpoint fingerprint,
    graph, profile, precision, GPU, TensorRT): only when one is missing is the checkpoint loaded, exported (and
    quantized) and that engine built. Writes `out_dir/manifest.json` (engine names + profiles), which the
    `tensorrt` backend loads. `cameras`: images per prompt (the data config's video keys)."""
    import torch

    reason = export_runner("tensorrt").missing(torch.device("cuda"))  # what the engines' runner needs
    if reason:
        raise RuntimeError(f"building TensorRT engines needs {reason}")
    import tensorrt as trt

    check_tensorrt_version(trt.__version__)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    unsupported = precision_error(precision, *gpu_identity())
    if unsupported:  # before anything is exported
        raise ValueError(unsupported)
    out = Path(out_dir)
    config = Gr00tConfig.from_checkpoint(model_path, eagle_path)
    steps = num_steps or config.num_inference_timesteps
    prompt = prompt_length_range(config, cameras, instruction_margin)
    profiles = optimization_profiles(config, cameras, batch, prompt, steps)
    fingerprint = checkpoint_fingerprint(model_path)
    gpu, capability = gpu_identity()
    keys = {graph: engine_cache_key(fingerprint, graph, profile, precision, gpu, capability, trt.__version__)
            for graph, profile in profiles.items()}
    engines = {graph: out / "engines" / f"{graph}-{precision}-{key}.engine" for graph, key in keys.items()}
    missing = [graph for graph, engine in engines.items() if not engine.is_file()]
    if missing:
        onnx_dir = graphs_to_build(model_path, out, missing, precision, batch[1], cameras, steps, eagle_path, progress)
        for graph in missing:
            if progress:
                print(f"building {graph} ({precision}) engine ...", flush=True)
            build_engine(graph_file(onnx_dir, graph), engines[graph], profiles[graph], precision,
                         timing_cache=out / "engines" / "timing.cache", progress=progress)
    log.info("TensorRT engines: %d reused from %s, %d built", len(engines) - len(missing), out / "engines", len(missing))
    write_manifest(out, target="tensorrt", checkpoint=model_path, fingerprint=fingerprint,
                   options=dict(cameras=cameras, batch=list(batch), prompt=list(prompt), num_steps=steps,
                                precision=precision),
                   files=[f"engines/{engine.name}" for engine in engines.values()],
                   precision=precision, gpu=gpu, compute_capability=capability, tensorrt=trt.__version__,
                   graphs={graph: dict(engine=engine.name, profile={k: [list(s) for s in v]
                                                                    for k, v in profiles[graph].items()})
                           for graph, engine in engines.items()})
    return out
