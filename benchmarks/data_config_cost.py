"""What a data config's transforms cost per call: preprocessing (frames, state transforms, prompt) and
postprocessing (decoding) of `get_action`, per camera, for NVIDIA's three-camera configs against `so100_dualcam`, on
the tiny checkpoint (the model is not what is measured), frames at each config's training resolution, configs
alternating call by call. The issue's bar: a three-camera config within 1.5x of so100_dualcam's per camera.

    python benchmarks/data_config_cost.py [--reps 200] [--out benchmarks/results/cpu/data_config_cost.json]
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from embodiment_cases import embodiment_checkpoint, observation  # noqa: E402

from gr00t_fast.loading import load_policy  # noqa: E402
from gr00t_fast.model.random_checkpoint import write_checkpoint  # noqa: E402

CONFIGS = ["so100_dualcam", "bimanual_panda_gripper", "single_panda_gripper", "oxe_droid", "agibot_genie1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/cpu/data_config_cost.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    tiny = write_checkpoint(work / "tiny", progress=False)
    policies, inputs = {}, {}
    for name in CONFIGS:
        checkpoint, tag = embodiment_checkpoint(tiny, work / name, name)
        policies[name] = load_policy(checkpoint, data_config=name, embodiment_tag=tag, device="cpu", threads=2,
                                     warmup=True)
        inputs[name] = observation(policies[name], np.random.default_rng(0))
    times = {name: {"preprocess": [], "postprocess": []} for name in CONFIGS}
    for _ in range(args.reps):
        for name in CONFIGS:  # alternating, call by call
            policies[name].get_action(inputs[name])
            last = policies[name].timings["last"]
            for stage in ("preprocess", "postprocess"):
                times[name][stage].append(last[stage])
    rows = {}
    for name in CONFIGS:
        cameras = len(policies[name].data_config.video_keys)
        pre, post = (float(np.median(times[name][s])) for s in ("preprocess", "postprocess"))
        rows[name] = {"cameras": cameras, "resolution": list(next(iter(policies[name].video_resolution.values()))),
                      "preprocess_ms": pre, "postprocess_ms": post, "per_camera_ms": (pre + post) / cameras}
    base = rows["so100_dualcam"]["per_camera_ms"]
    for row in rows.values():
        row["per_camera_vs_so100_dualcam"] = row["per_camera_ms"] / base
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    flags = next((line for line in flags.splitlines() if line.startswith("Flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    result = {"reps": args.reps, "cpu": platform.processor() or platform.machine(), "isa": isa, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"isa: {isa}")
    print(f"{'config':<24} cams  resolution  preprocess  postprocess  per camera  vs so100_dualcam")
    for name, r in rows.items():
        print(f"{name:<24} {r['cameras']:>4}  {r['resolution'][0]}x{r['resolution'][1]:<5} {r['preprocess_ms']:>8.2f} ms "
              f"{r['postprocess_ms']:>8.3f} ms  {r['per_camera_ms']:>7.2f} ms  {r['per_camera_vs_so100_dualcam']:.2f}x")


if __name__ == "__main__":
    main()
