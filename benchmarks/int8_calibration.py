"""ONNX Runtime static INT8 (`gr00t-fast export int8`): its action error per calibration set, on data held out of it.

NVIDIA's tiny checkpoint; INT8 graphs calibrated on (1) the synthetic scenes (`export int8`'s default), (2) the
simulated SO-100's camera frames alone, (3) those frames beside the synthetic scenes (what `export int8
--calibration FILE` does); each against fp32 eager on NVIDIA's so100 reference cases (their images resemble the
synthetic scenes) and on simulated frames none of the calibrations saw. For scale, bf16 and `--quantize int8`'s
dynamic per-token INT8 (every layer, as on a GPU) on the same data. Max / median arm degrees, max gripper.

    python benchmarks/int8_calibration.py [--model_path ../shared/golden_public/tiny_n15] [--out bench_out/int8_cal]
"""

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import gr00t_fast.model.quantize as quantize
from gr00t_fast.backends import fidelity
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
from gr00t_fast.dev.bench.backends import InDtype, case_observations
from gr00t_fast.dev.demo_task import sim_swing_observations
from gr00t_fast.export.int8 import observation_samples, quantize_graphs
from gr00t_fast.export.onnx import export_onnx
from gr00t_fast.loading import load_policy, quantize_model
from gr00t_fast.model import load_model
from gr00t_fast.model.inputs import INSTRUCTIONS, calibration_inputs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "golden_public"
STEPS = 4


def error_row(name: str, backend, reference, evaluations: dict[str, dict], decode) -> dict:
    """`backend`'s largest action differences against `reference` over each evaluation set's cases."""
    row = {"path": name}
    for label, cases in evaluations.items():
        errors = [fidelity(backend, reference, *case, STEPS, decode)["max_abs_diff_by_key"] for case in cases.values()]
        arm = [e["action.single_arm"] for e in errors]
        row[label] = {"arm_max": max(arm), "arm_median": float(np.median(arm)),
                      "gripper_max": max(e["action.gripper"] for e in errors), "per_case": dict(zip(cases, arm))}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", default=str(SHARED / "tiny_n15"))
    parser.add_argument("--cases", default=str(SHARED / "cases.npz"))
    parser.add_argument("--out", default="bench_out/int8_calibration")
    parser.add_argument("--samples", type=int, default=8, help="calibration samples per source")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    policy = load_policy(args.model_path, device="cpu", dtype="float32", data_config="so100", warmup=False)
    model = policy.model
    shape = (model.config.action_horizon, model.config.max_action_dim)
    frames = out / "sim_observations.npz"  # 2 * samples states along the swing: the even ones calibrate
    np.savez(frames, **sim_swing_observations(2 * args.samples, INSTRUCTIONS))
    samples = observation_samples(frames, policy.processor, model.config, 2 * args.samples)
    gen = torch.Generator().manual_seed(123)
    evaluations = {
        "NVIDIA's cases": {name: (policy.processor(obs), torch.as_tensor(noise).reshape(-1, *shape))
                           for name, (obs, noise) in case_observations(args.cases, "so100").items()},
        "held-out sim frames": {f"sim {i}": (samples[i][0], torch.randn(1, *shape, generator=gen))
                                for i in range(1, 2 * args.samples, 2)},
    }
    synthetic = calibration_inputs(model.config, args.samples)
    sources = {"synthetic scenes (default)": synthetic, "simulated frames alone": samples[::2],
               "simulated frames + synthetic (--calibration)": samples[::2] + synthetic}
    export_onnx(model, out / "fp32", *synthetic[0], STEPS, progress=False)
    decode = lambda actions: policy.processor.decode(actions, batched=True)  # noqa: E731
    reference = TorchBackend(model)
    rows = []
    for k, (name, calibration) in enumerate(sources.items()):
        graphs = quantize_graphs(model, out / "fp32", out / f"int8_{k}", calibration, STEPS, progress=False)
        rows.append(error_row(f"ONNX Runtime INT8, calibrated on {name}", OnnxRuntimeBackend(model, onnx_dir=graphs),
                              reference, evaluations, decode))
    bf16 = load_model(args.model_path, device="cpu", dtype=torch.bfloat16)
    rows.append(error_row("bf16 (no calibration)", InDtype(TorchBackend(bf16), torch.bfloat16), reference,
                          evaluations, decode))
    quantize.CPU_INT8_MIN_WIDTH = quantize.CPU_INT8_MIN_MACS = 0  # every layer, as on a GPU
    int8 = copy.deepcopy(model)
    quantize_model(int8, "int8")
    rows.append(error_row("--quantize int8, every layer (dynamic, fitted to synthetic scenes)", TorchBackend(int8),
                          reference, evaluations, decode))
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    result = {"command": " ".join(["python", *sys.argv]), "lscpu": flags, "rows": rows}
    (out / "int8_calibration.json").write_text(json.dumps(result, indent=1))
    print("| Path | NVIDIA's cases: arm max / median (deg), gripper max | held-out sim frames: same |")
    print("|---|---|---|")
    for r in rows:
        cells = [f"{r[s]['arm_max']:.2f} / {r[s]['arm_median']:.2f}, {r[s]['gripper_max']:.2f}" for s in evaluations]
        print(f"| {r['path']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
