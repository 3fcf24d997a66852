"""The memory plan of the full-size N1.5 from a fake-CUDA trace (`gr00t_fast.dev.gpu_trace`): weights and peak
activation bytes per weight format (bf16, fp16, int8, fp8) for one observation and the fleet's buckets, and whether
that fits the GPUs users have. `gr00t-fast bench gpu --plan` prints it (a CUDA build of torch, no GPU needed).

Traced bytes are the live CUDA tensors (no allocator rounding); `RUNTIME_GIB` is added for what a trace cannot see
(CUDA context, cuBLAS workspace, allocator slack). Jetson memory is shared with the OS: `OS_GIB` of it is kept back.
"""

from __future__ import annotations

import tempfile

import torch

__all__ = ["DEVICES", "FORMATS", "measure", "print_plan", "table", "usable_gib"]

GIB = 2**30
RUNTIME_GIB = 1.0
OS_GIB = {"jetson": 1.5}
DEVICES = {  # name -> memory in GiB (Jetson: unified with the CPU)
    "Jetson Orin Nano 8 GB": 8, "Jetson Orin NX 16 GB": 16, "Jetson AGX Orin 32 GB": 32, "Jetson AGX Orin 64 GB": 64,
    "Jetson Thor 128 GB": 128, "RTX 4090 24 GB": 24, "H100 80 GB": 80,
}
FORMATS = {"bf16": (torch.bfloat16, None), "fp16": (torch.float16, None), "int8": (torch.bfloat16, "int8"),
           "fp8": (torch.bfloat16, "fp8")}


def usable_gib(device: str) -> float:
    return DEVICES[device] - (OS_GIB["jetson"] if device.startswith("Jetson") else 0.0)


def measure(cuda, folder, rows_list: tuple[int, ...], formats: tuple[str, ...] = tuple(FORMATS)) -> list[dict]:
    """Per weight format and row count: weights and peak activation GiB of the fleet's batched call (requests of
    different prompt lengths), traced on `cuda` (a `FakeCuda` active on this thread, the torch thread)."""
    from gr00t_fast.dev.gpu_trace import fake_policy, observation, trace_call
    from gr00t_fast.serve.fleet_model import FleetModel

    rows_out = []
    for name in formats:
        dtype, quantize = FORMATS[name]
        policy = fake_policy(folder, dtype, quantize=quantize)
        fleet = FleetModel(policy, buckets=rows_list)
        for rows in rows_list:
            obs = [observation(policy, instruction="Pick up the cube" + " now" * i, seed=i) for i in range(rows)]
            trace = trace_call(cuda, policy, lambda: fleet(obs, [None] * rows, [None] * rows), f"{name} x{rows}")
            trace.check()
            rows_out.append({"weights": name, "rows": rows, "weights_gib": trace.weights_bytes / GIB,
                             "activations_gib": trace.peak_bytes / GIB})
    return rows_out


def table(plan: list[dict]) -> str:
    """Markdown: one line per (weights, rows), total GiB with the runtime, then each device's headroom."""
    head = ["Weights", "Rows", "Weights GiB", "Peak activations GiB", f"Total GiB (+{RUNTIME_GIB:g} runtime)"]
    lines = ["| " + " | ".join(head + list(DEVICES)) + " |", "|" + "---|" * (len(head) + len(DEVICES))]
    for row in plan:
        total = row["weights_gib"] + row["activations_gib"] + RUNTIME_GIB
        fits = [f"fits, {usable_gib(d) - total:+.1f}" if usable_gib(d) >= total else f"no, {usable_gib(d) - total:+.1f}"
                for d in DEVICES]
        lines.append(f"| {row['weights']} | {row['rows']} | {row['weights_gib']:.2f} | {row['activations_gib']:.3f} | "
                     f"{total:.2f} | " + " | ".join(fits) + " |")
    return "\n".join(lines)


def print_plan(rows_list: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> str:
    """Trace, print and return the plan's Markdown table."""
    from gr00t_fast.dev.fake_cuda import FakeCuda
    from gr00t_fast.dev.gpu_trace import config_folder
    from gr00t_fast.runtime.torch_thread import run_on_torch_thread

    if torch.version.cuda is None:
        raise ValueError(f"--plan traces on fake CUDA: it needs a CUDA build of torch (this is {torch.__version__}); "
                         "bash .ci/fake_cuda_env.sh builds one (no GPU needed)")
    def traced(folder) -> list[dict]:
        with FakeCuda() as cuda:
            return measure(cuda, folder, rows_list)

    with tempfile.TemporaryDirectory() as tmp:
        plan = run_on_torch_thread(traced, config_folder(tmp))
    text = table(plan)
    print(f"Full-size N1.5 memory plan (fake-CUDA trace; headroom in GiB, Jetson less {OS_GIB['jetson']:g} GiB for "
          f"the OS):\n{text}", flush=True)
    return text
