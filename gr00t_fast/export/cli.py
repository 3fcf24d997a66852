"""`gr00t-fast export onnx|tensorrt|int8`: graphs, engines and INT8 models from a checkpoint.

    gr00t-fast export onnx     --model_path CKPT --out DIR [--data_config so100] [--denoising_steps 4] [--batch 1]
    gr00t-fast export tensorrt --model_path CKPT --out DIR [--precision bf16] [--batch 1] [--max_batch 4]
    gr00t-fast export int8     --model_path CKPT --out DIR [--calibration OBS.npz|DATASET] [--calibration_samples 8]
"""

import argparse
import functools
from pathlib import Path

import torch

from gr00t_fast.cli_args import ArgumentParser, error_line, require
from gr00t_fast.export.manifest import MANIFEST, write_manifest
from gr00t_fast.export.tensorrt import INSTRUCTION_MARGIN, PRECISIONS
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.model.inputs import example_inputs
from gr00t_fast.policy.data_config import DataConfig
from gr00t_fast.policy.metadata import EmbodimentMetadata
from gr00t_fast.policy.preflight import check_policy_inputs
from gr00t_fast.runtime.atomic import staged


# target -> the optional modules it needs, checked before anything is written (TensorRT's engine build checks its
# own stack: the GPU, TensorRT's version, then onnx)
NEEDS = {"onnx": ("onnx", "onnxruntime"), "int8": ("onnx", "onnxruntime"), "tensorrt": ()}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast export", deprecated={"--steps": "--denoising_steps"},
                            description=__doc__.split("\n\n")[0] + " Every flag also takes dashes (--model-path).")
    parser.add_argument("target", choices=list(NEEDS), help="onnx (fp32 graphs), tensorrt (engines) or int8 (graphs)")
    parser.add_argument("--model_path", required=True, help="GR00T N1.5 checkpoint directory, or a Hugging Face "
                        "model id ORG/NAME")
    parser.add_argument("--revision", default=None, help="with a model id: its branch, tag or commit (default: main)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--data_config", default="so100", help="decides the camera count (prompt length)")
    parser.add_argument("--denoising_steps", type=int, default=None,
                        help="denoising steps unrolled in the sampler graph (default: the checkpoint's)")
    parser.add_argument("--batch", type=int, default=1, help="example batch (tensorrt: the optimal batch)")
    parser.add_argument("--max_batch", type=int, default=None, help="tensorrt: largest batch (default --batch)")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16", help="tensorrt engine precision")
    parser.add_argument("--max_instruction_tokens", type=int, default=INSTRUCTION_MARGIN,
                        help="tensorrt: instruction tokens the prompt-length profile allows")
    parser.add_argument("--calibration_samples", type=int, default=8, help="int8: sample observations to calibrate on")
    parser.add_argument("--calibration", default=None, help="int8: calibrate on your own observations: a recorded "
                        "LeRobot dataset folder (v2.x with meta/modality.json, or v3.0), or an .npz of one batched "
                        "observation as get_action takes it (video.<camera> (N, T, H, W, 3) uint8, state.<key> "
                        "(N, T, D), the instruction key N strings): --calibration_samples of them, evenly spaced, "
                        "beside as many synthetic scenes (default: those alone)")
    parser.add_argument("--embodiment_tag", default="new_embodiment", help="the checkpoint's embodiment: its "
                        "statistics give the action error in the policy's units (and normalize int8 --calibration's "
                        "states)")
    parser.add_argument("--eagle_path", default=None, help="Eagle assets folder (default: found beside the checkpoint)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export; a bad checkpoint, a missing extra or a failing build is one line and exit code 2. ONNX and INT8
    graphs are written into a folder beside `--out` and renamed into place once whole, manifest last: a failed or
    killed run leaves `--out` as it was (its leftover folder is removed by the next run)."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        args.model_path = str(resolve_checkpoint(args.model_path, args.revision))
        if args.calibration is not None and args.target != "int8" or args.calibration_samples < 1:
            raise ValueError(f"--calibration is for export int8 and --calibration_samples must be >= 1, got export "
                             f"{args.target} --calibration {args.calibration} --calibration_samples "
                             f"{args.calibration_samples}")
        check_out(out)
        require(f"export {args.target}", *NEEDS[args.target])
        config, metadata = check_policy_inputs(args.model_path, args.embodiment_tag, args.data_config)
        if args.target == "tensorrt":
            export_engines(args, out, config)
        else:
            with staged(out, replace=True) as tmp:
                export_graphs(args, tmp, config, metadata)
            print(f"{'ONNX' if args.target == 'onnx' else 'INT8'} graphs and {MANIFEST} in {out}")
    except (ImportError, ValueError, OSError, RuntimeError) as e:
        error_line("gr00t-fast export", e)
        return 2
    return 0


def check_out(out: Path) -> None:
    """`--out` must be new, an empty folder or an earlier export (it has a manifest): a re-export replaces it whole;
    any other folder is never replaced."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())):
        raise ValueError(f"--out {out} exists and is not an earlier export (no {MANIFEST}): an export replaces its "
                         "folder whole, so choose a new or empty folder")


def export_engines(args: argparse.Namespace, out: Path, config: DataConfig) -> None:
    from gr00t_fast.export.tensorrt import build_engines

    max_batch = max(args.batch, args.max_batch or args.batch)
    build_engines(args.model_path, out, cameras=len(config.video_keys),
                  batch=(1, args.batch, max_batch), num_steps=args.denoising_steps, precision=args.precision,
                  instruction_margin=args.max_instruction_tokens, eagle_path=args.eagle_path)
    print(f"TensorRT engines and manifest.json written to {out}")


def export_graphs(args: argparse.Namespace, out: Path, config: DataConfig, metadata: EmbodimentMetadata) -> None:
    """ONNX (fp32) or INT8 graphs and their manifest.json (the weights' fingerprint, the options, every file), into
    the folder `out`, for the data config `config` (its camera count) and the checkpoint's `metadata`."""
    from gr00t_fast.model import load_model

    model = load_model(args.model_path, device="cpu", dtype=torch.float32, eagle_path=args.eagle_path)
    cameras = len(config.video_keys)
    steps = args.denoising_steps or model.config.num_inference_timesteps
    inputs, noise = example_inputs(model.config, batch=args.batch, cameras=cameras)
    decode = action_decoder(model, config, metadata)
    if args.target == "onnx":
        from gr00t_fast.export.int8 import action_error
        from gr00t_fast.export.onnx import export_onnx

        report = export_onnx(model, out, inputs, noise, steps)
        for graph, entry in report.items():
            entry["path"] = Path(entry["path"]).relative_to(out).as_posix()  # `out` is the staging folder
            print(f"{graph:<12} {entry['path']}  max |onnx - torch| = {entry['max_abs_diff']:.2e} (graph output)")
        report = {"graphs": report, "action_error": action_error(model, out, (inputs, noise), steps, decode)}
        print(f"ONNX graphs: {describe_error(report['action_error'])}")
    else:
        from gr00t_fast.export.int8 import export_int8

        samples = calibration(args, model, config, metadata)
        report = {"action_error": export_int8(model, out, samples, (inputs, noise), steps, decode=decode),
                  "calibration": {"observations": args.calibration, "samples": len(samples)}}
        print(f"INT8 graphs: {describe_error(report['action_error'])}")
    write_manifest(out, target=args.target, checkpoint=args.model_path,
                   options=dict(data_config=args.data_config, cameras=cameras, num_steps=steps, batch=args.batch),
                   report=report)


def action_decoder(model: torch.nn.Module, config: DataConfig, metadata: EmbodimentMetadata):
    """Normalized actions -> {key: actions in the policy's units}: the processor's decoding for `--data_config` and
    `--embodiment_tag`, with the checkpoint's statistics."""
    from gr00t_fast.policy.processor import processor_for_model

    processor = processor_for_model(model.config, config, metadata)
    return functools.partial(processor.decode, batched=True)


def describe_error(error: dict) -> str:
    """The action error against fp32 eager PyTorch, normalized and per action key in the policy's units."""
    keys = ", ".join(f"{key} {diff:.3g}" for key, diff in error["max_abs_diff_by_key"].items())
    return (f"actions against PyTorch fp32 eager: max {error['max_abs_diff']:.3g}, mean {error['mean_abs_diff']:.3g} "
            f"normalized (the model's [-1, 1] range); max per key in the checkpoint's units (SO-100: degrees, "
            f"the gripper 0-100): {keys}")


def calibration(args: argparse.Namespace, model: torch.nn.Module, config: DataConfig,
                metadata: EmbodimentMetadata) -> list:
    """The int8 calibration samples: synthetic scenes (their states and noise span the whole normalized range), and
    with `--calibration` as many of the user's own observations besides, through the policy's processor for
    `--data_config` (frames and states as at inference). Their own frames alone would leave states outside the
    recorded ones beyond the calibrated range (benchmarks/history.md: 12.5 deg on one of NVIDIA's cases)."""
    from gr00t_fast.export.int8 import observation_samples
    from gr00t_fast.model.inputs import calibration_inputs

    synthetic = calibration_inputs(model.config, args.calibration_samples, len(config.video_keys))
    if args.calibration is None:
        return synthetic
    from gr00t_fast.policy.processor import processor_for_model

    processor = processor_for_model(model.config, config, metadata)
    source = args.calibration
    if Path(source).is_dir():  # a recorded LeRobot dataset: frames and states of its episodes, evenly spaced
        from gr00t_fast.data import open_dataset

        require("export int8 --calibration DATASET", "pyarrow", "av")
        source = open_dataset(source, config).sample(args.calibration_samples)
    return observation_samples(source, processor, model.config, args.calibration_samples) + synthetic
