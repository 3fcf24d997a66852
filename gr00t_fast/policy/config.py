"""`PolicyConfig`: what loading a policy takes, one dataclass for `run` (`gr00t_fast.typed_config` flags), `serve`,
`fleet serve` and `bench` (argparse flags, `gr00t_fast.cli_args`: inference_service.py's dash spellings work too)."""

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from gr00t_fast.backends.names import BACKEND_NAMES, CALIBRATING_BACKENDS, DEFAULT_BACKEND
from gr00t_fast.literals import literal

DTypeName = literal("auto", "float32", "bfloat16", "float16")
Quantization = literal("int8", "fp8")
ImagePreprocessing = literal("auto", "isaac", "lerobot")


def _help(text: str) -> dict:
    return {"help": text}


def backend_names() -> tuple[str, ...]:
    """`--backend`'s choices: the built-in backends' names (`gr00t_fast.backends.names`, declared without importing
    torch, so that `--help` and a flag's error come before any heavy import; a test holds them equal to the
    registry's), and any backend registered since (`gr00t_fast.backends.BACKENDS`: registering one imports it), read
    when a command parses its flags."""
    registry = sys.modules.get("gr00t_fast.backends.registry")
    return BACKEND_NAMES + tuple(n for n in getattr(registry, "BACKENDS", ()) if n not in BACKEND_NAMES)


# deprecated (goes away in the next release): the registry's names as a Literal type (`backend_names`)
BackendName = literal(*backend_names())


@dataclass
class PolicyConfig:
    """The policy: the checkpoint, how the network runs (device, dtype, backend, quantization) and its inputs."""

    model_path: str = field(default="", metadata=_help(
        "checkpoint directory, or a Hugging Face model id ORG/NAME (Isaac-GR00T or LeRobot format; a local folder of "
        "that name wins)"))
    revision: str | None = field(default=None, metadata=_help(
        "with a model id: the branch, tag or commit to load (default: main)"))
    embodiment_tag: str = field(default="new_embodiment", metadata=_help("embodiment of the checkpoint"))
    data_config: str = field(default="auto", metadata=_help(
        "auto (so100; a LeRobot checkpoint's own keys), one of NVIDIA's twelve (gr00t-fast data-config list), "
        "metadata (min-max keys alone), a data-config .yaml/.json of your robot, or a modality .json"))
    denoising_steps: int | None = field(default=None, metadata=_help("flow-matching steps (default: the checkpoint's, 4)"))
    device: str | None = field(default=None, metadata=_help("torch device (default: cuda when available, else cpu)"))
    dtype: DTypeName | None = field(default="auto", metadata=_help(
        "auto: bfloat16 on CUDA; on a CPU bfloat16 where it has AMX or AVX512-BF16 units and the checkpoint 10M "
        "parameters or more, else float32 (a rule: the same at every load; torch backends with --quantize int8 on a "
        "CPU: float32). float32 is the exact path; null: bfloat16 on CUDA, float32 on CPU"))
    backend: str = field(default=DEFAULT_BACKEND, metadata={"help": "how the network runs (gr00t_fast.backends)",
                                                            "choices": backend_names})
    backend_dir: str | None = field(default=None, metadata=_help(
        "onnxruntime, openvino: exported ONNX graphs; tensorrt: built engines (default: exported / built into the "
        "cache)"))
    quantize: Quantization | None = field(default=None, metadata=_help(
        "int8/fp8 matmuls (torch, compile, cuda-graph); openvino: int8 weights (NNCF)"))
    calibration: str | None = field(default=None, metadata=_help(
        "--quantize int8 (torch, compile, cuda-graph) measured on your own observations: an .npz as `run "
        "--record_observations` writes, up to 8 of them evenly spaced, whose activations set the smoothing and the "
        "per-layer error check and to which the int8 weights are rounded (GPTQ; one batched model call as the "
        "policy loads, then the fit: minutes at full size on 2 CPU cores: 266-330 s of an Intel Xeon one call at a "
        "time, ~510 s of an AVX2 EPYC batched, ~1.2 GB more while it runs; default on a CPU: 8 synthetic "
        "scenes, whose activations the weights are fitted to; on a GPU: one example call, the weights at their "
        "nearest levels)"))
    openvino_device: str = field(default="CPU", metadata=_help(
        "the openvino backend's device as OpenVINO names it: CPU (tested), GPU, GPU.1, NPU, AUTO or AUTO:GPU,CPU "
        "(passed through to OpenVINO)"))
    eagle_path: str | None = field(default=None, metadata=_help(
        "Eagle asset folder (default: <model_path>/eagle2_hg_model or the HF cache)"))
    seed: int = field(default=0, metadata=_help("seeds the denoising noise"))
    threads: int | None = field(default=None, metadata=_help(
        "torch CPU threads; default (null) auto: every usable CPU (affinity, cgroup quota), fewer while other "
        "processes keep them busy"))
    max_instruction_tokens: int = field(default=512, metadata=_help("longer instructions are refused (default 512)"))
    image_preprocessing: ImagePreprocessing = field(default="auto", metadata=_help(
        "auto (the checkpoint writer's: Isaac-GR00T or LeRobot), isaac or lerobot"))

    def __post_init__(self) -> None:
        if self.denoising_steps is not None and self.denoising_steps < 1:
            raise ValueError(f"denoising_steps must be >= 1, got {self.denoising_steps}")
        if self.max_instruction_tokens < 1:
            raise ValueError(f"max_instruction_tokens must be >= 1, got {self.max_instruction_tokens}")
        if self.calibration is not None:  # the flag line, before any checkpoint is read or a robot connects
            check_calibration(self.calibration, self.quantize, self.backend)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or null: auto), got {self.threads}")
        if self.device is not None:  # fail on the flag line, before any checkpoint is read or generated
            from gr00t_fast.model.loading import resolve_device_dtype

            resolve_device_dtype(self.device, self.dtype)

    def load_kwargs(self, model_path: str | None = None) -> dict[str, Any]:
        """Keyword arguments of `load_policy` (`model_path` overrides the configured one, e.g. a demo checkpoint)."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(PolicyConfig)}
        kwargs["model_path"] = model_path or self.model_path
        return kwargs


def check_calibration(path: str, quantize: str | None, backend: str) -> None:
    """ValueError in one line unless `path` can calibrate this load: `--quantize int8` on a backend that quantizes the
    network itself (fp8 and OpenVINO's int8 weights measure no activations), and an .npz of observations (each is
    checked against the checkpoint when the policy loads, before its weights)."""
    if quantize != "int8" or backend not in CALIBRATING_BACKENDS:
        raise ValueError(f"--calibration {path}: the observations --quantize int8 measures its activations on, with "
                         f"--backend {', '.join(CALIBRATING_BACKENDS)}; got --backend {backend} --quantize {quantize}")
    from gr00t_fast.policy.observations import read_observations

    try:
        read_observations(path)
    except ValueError as e:
        raise ValueError(f"--calibration {e}") from None


def calibrated(options: dict[str, Any]) -> dict[str, Any]:
    """`load_policy` keyword arguments with `calibration` dropped where they load no int8 that it calibrates: a load
    derived from a command given `--calibration` (an `eval --compare` path, a benchmark's row); the command's own
    combination was checked on its flag line (`check_calibration`)."""
    if options.get("calibration") is not None and (options.get("quantize") != "int8"
                                                    or options.get("backend") not in CALIBRATING_BACKENDS):
        return {**options, "calibration": None}
    return options


def add_policy_arguments(parser: argparse.ArgumentParser, required_model: bool = True) -> None:
    """One argparse flag per `PolicyConfig` field (`--model_path`; a `gr00t_fast.cli_args.ArgumentParser` takes
    `--model-path` too), choices from the Literal types or the field's `choices` (`backend_names`), help from the
    field metadata."""
    hints = typing.get_type_hints(PolicyConfig)
    for f in dataclasses.fields(PolicyConfig):
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None -> X
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        options: dict[str, Any] = {"default": f.default, "help": f.metadata["help"], "dest": f.name}
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]()
        elif typing.get_origin(kind) is Literal:
            options["choices"] = typing.get_args(kind)
        else:
            options["type"] = kind
        if f.name == "model_path" and required_model:
            options = {"required": True, "help": f.metadata["help"], "dest": f.name}
        parser.add_argument(f"--{f.name}", **options)


def policy_config_from_args(args: argparse.Namespace) -> PolicyConfig:
    """The `PolicyConfig` of parsed `add_policy_arguments` flags."""
    return PolicyConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PolicyConfig)})
