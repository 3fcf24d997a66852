"""Control-loop telemetry: per-step records, a live status line, the end-of-run summary and step recording.

The statistics are plain functions over `StepRecord`s so that benchmarks can reuse them on recorded runs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from gr00t_fast.control.outputs import OutputFile


@dataclass
class StepRecord:
    """What happened in one control step."""

    step: int
    t: float  # seconds since the loop started, taken when the action was sent
    state: list[float]  # observed joint positions (JOINT_NAMES order; empty when the observation failed)
    action: list[float]  # joint targets sent to the robot
    refill: bool  # the step waited for a new chunk (blocking inference)
    hold: bool  # no usable policy action: the last safe position was held
    inference_ms: float | None  # latency of the inference that finished during this step
    loop_ms: float  # work time of the step (observation, any blocking inference, send), sleep excluded
    queue_depth: int  # actions left in the queue after this step
    chunk_jump_deg: float | None = None  # a chunk switch happened: |new action - the one the queue held|, arm max
    retries: int = 0  # robot reads/writes (or camera frames) retried during the step
    fault: str | None = None  # "bus": a joint read or write still failed (held); "camera": no frame (no inference)


def control_periods_ms(records: Sequence[StepRecord]) -> np.ndarray:
    """Time between consecutive sent actions, in ms."""
    t = np.array([r.t for r in records], dtype=np.float64)
    return np.diff(t) * 1e3


def longest_freeze_ms(records: Sequence[StepRecord]) -> float:
    """Longest time between two consecutive fresh policy actions (steps that did not hold), in ms."""
    t = np.array([r.t for r in records if not r.hold], dtype=np.float64)
    return float(np.diff(t).max() * 1e3) if len(t) > 1 else 0.0


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    """Mean / median / min / max / std / p90 of a list of milliseconds (NaN when empty)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {k: float("nan") for k in ("mean", "median", "min", "max", "std", "p90")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "std": float(v.std()), "p90": float(np.percentile(v, 90))}


def summarize(records: Sequence[StepRecord]) -> dict[str, float | int]:
    """Run statistics in ms: per-step work time, step vs refill means, control period, freezes, inference."""
    loop = [r.loop_ms for r in records]
    periods = control_periods_ms(records)
    inference = [r.inference_ms for r in records if r.inference_ms is not None]
    jumps = [r.chunk_jump_deg for r in records if r.chunk_jump_deg is not None]
    step = stats_ms(loop)
    return {
        "steps": len(records),
        "refills": sum(r.refill for r in records),
        "holds": sum(r.hold for r in records),
        "retries": sum(r.retries for r in records),
        "bus_faults": sum(r.fault == "bus" for r in records),
        "camera_misses": sum(r.fault == "camera" for r in records),
        "step_mean_ms": step["mean"],
        "step_median_ms": step["median"],
        "step_min_ms": step["min"],
        "step_max_ms": step["max"],
        "nonrefill_mean_ms": stats_ms([r.loop_ms for r in records if not r.refill])["mean"],
        "refill_mean_ms": stats_ms([r.loop_ms for r in records if r.refill])["mean"],
        "period_p50_ms": float(np.percentile(periods, 50)) if periods.size else float("nan"),
        "period_p99_ms": float(np.percentile(periods, 99)) if periods.size else float("nan"),
        "longest_freeze_ms": longest_freeze_ms(records),
        "inferences": len(inference),
        "inference_mean_ms": stats_ms(inference)["mean"],
        "chunk_switches": len(jumps),
        "jump_mean_deg": float(np.mean(jumps)) if jumps else float("nan"),
        "jump_max_deg": float(np.max(jumps)) if jumps else float("nan"),
    }


UNKNOWN_WEIGHTS_JUMP_DEG = 30.0  # a policy server's mean jump above this: say what it usually means


def random_weights_note(made: str) -> str:
    """Why chunk-switch jumps are large on a checkpoint of random weights (`made`: how they were made)."""
    return (f"the checkpoint holds random weights ({made}): its chunks are unrelated to each other, so these jumps "
            "measure the weights, not the loop (a trained policy's are a few degrees)")


def format_summary(summary: dict[str, float | int], title: str = "Control loop summary",
                   random_weights: str | None = None, remote: bool = False) -> str:
    """Human-readable summary block. Every count is of the same steps and calls: refills are the steps that waited
    for an inference call, so refills + overlapped calls = calls; each call after the first is a chunk switch
    unless it failed. `random_weights` (how the checkpoint's untrained weights were made) explains the jumps;
    `remote` (a policy server, whose weights are not known here) explains them when they are large."""
    s = summary
    if not s["steps"]:
        return f"==== {title} ====\nno control step was run"
    jumps = (f"Chunk-switch jump: mean {_deg(s['jump_mean_deg'])} deg, max {_deg(s['jump_max_deg'])} deg "
             f"({s['chunk_switches']} chunk switches)")
    if random_weights and s["chunk_switches"]:
        jumps += f"\n  {random_weights_note(random_weights)}"
    elif remote and s["chunk_switches"] and s["jump_mean_deg"] > UNKNOWN_WEIGHTS_JUMP_DEG:
        jumps += ("\n  the policy server's weights are not known here: jumps this large usually mean a checkpoint of "
                  "random weights (make-checkpoint's), whose chunks are unrelated to each other; a trained policy's "
                  "are a few degrees")
    return "\n".join(
        [
            f"==== {title} ====",
            f"Steps: {s['steps']}; Refill count: {s['refills']} (steps that waited for an inference call); "
            f"held: {s['holds']} (no action ready, the last position repeated)",
            f"Per-step time (work, sleep excluded): mean {s['step_mean_ms']:.2f} ms, median {s['step_median_ms']:.2f}"
            f" ms, min {s['step_min_ms']:.2f} ms, max {s['step_max_ms']:.2f} ms",
            f"  of which Step Mean {s['nonrefill_mean_ms']:.2f} ms over the {s['steps'] - s['refills']} steps that "
            f"did not wait, Refill Mean {s['refill_mean_ms']:.2f} ms over the {s['refills']} that did",
            f"Control period p50: {s['period_p50_ms']:.2f} ms, p99: {s['period_p99_ms']:.2f} ms, "
            f"longest freeze: {s['longest_freeze_ms']:.1f} ms",
            f"Inference: {s['inferences']} calls, mean {s['inference_mean_ms']:.1f} ms: {s['refills']} waited for "
            f"(the refills), {s['inferences'] - s['refills']} ran while the arm moved",
            jumps,
            f"Robot faults: {s['retries']} reads/writes retried; {s['bus_faults']} steps whose joint read or write "
            f"still failed (held); {s['camera_misses']} steps without a camera frame (no inference)",
        ]
    )


def _deg(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "-"


LEGEND = ("live line, over the steps since the previous one: inference = mean latency of the calls that finished | "
          "loop = mean work per step, sleep excluded | period = median time between actions (1000/fps ms when on "
          "time) | queue = actions left to execute | held = steps that repeated the last position (no action ready) | "
          "faults = reads/writes retried, steps the bus or a camera still failed")


class LiveTelemetry:
    """Prints one status line per `interval_s` with the recent inference time, loop time and queue depth, the
    `LEGEND` once before the first."""

    def __init__(self, interval_s: float = 1.0, stream: IO[str] | None = None):
        self.interval_s = interval_s
        self.stream = stream
        self._pending: list[StepRecord] = []
        self._last_print = time.perf_counter()
        self._legend = True

    def update(self, record: StepRecord) -> None:
        self._pending.append(record)
        now = time.perf_counter()
        if now - self._last_print >= self.interval_s:
            if self._legend:
                print(LEGEND, file=self.stream, flush=True)
                self._legend = False
            print(status_line(self._pending), file=self.stream, flush=True)
            self._pending.clear()
            self._last_print = now


def status_line(records: Sequence[StepRecord]) -> str:
    """One line over a window of recent steps."""
    last = records[-1]
    inference = [r.inference_ms for r in records if r.inference_ms is not None]
    periods = control_periods_ms(records)
    return (
        f"[{last.t:7.2f}s] step {last.step:5d} | inference "
        + (f"{np.mean(inference):7.1f} ms" if inference else "      - ms")
        + f" | loop {np.mean([r.loop_ms for r in records]):6.2f} ms"
        + (f" | period {np.median(periods):6.1f} ms" if periods.size else "")
        + f" | queue {last.queue_depth:2d} | held {sum(r.hold for r in records)}"
        + f" | faults {sum(r.retries for r in records)} retried, {sum(r.fault == 'bus' for r in records)} bus, "
          f"{sum(r.fault == 'camera' for r in records)} camera"
    )


class StepRecorder:
    """Writes every step as one JSON line (see `load_records`). A failed write (a full disk) stops the recording with
    one line; the run goes on (`gr00t_fast.control.outputs.OutputFile`)."""

    def __init__(self, path: str | Path, flag: str = "--record"):
        self.path = Path(path)
        self._file = OutputFile(flag, path)

    @property
    def failed(self) -> bool:
        return self._file.failed

    def write(self, record: StepRecord) -> None:
        self._file.write(json.dumps(dataclasses.asdict(record)) + "\n")

    def close(self) -> None:
        self._file.close()


class ObservationRecorder:
    """Keeps up to `capacity` of the observations sent to the policy, a uniform sample of the whole run (reservoir
    sampling, seeded), and writes them as one batched observation, an .npz `export int8 --calibration` and `bench
    backends --observations` read: each key's arrays stacked on a new leading sample axis. The file is written at
    `path` exactly (NumPy would add ".npz" to a name without it)."""

    def __init__(self, path: str | Path, capacity: int = 64, seed: int = 0):
        self.path = Path(path)
        self.capacity, self.rng = capacity, np.random.default_rng(seed)
        self.seen = 0
        self.kept: list[dict] = []

    def add(self, observation: dict) -> None:
        self.seen += 1
        slot = len(self.kept) if len(self.kept) < self.capacity else int(self.rng.integers(self.seen))
        if slot < self.capacity:  # copied: the robot may reuse its frame buffers
            kept = {key: np.array(value) for key, value in observation.items()}
            self.kept[slot:slot + 1] = [kept]

    def close(self) -> int:
        """Write the kept observations (none: no file); returns how many. OSError: the file could not be written."""
        if self.kept:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("wb") as f:
                np.savez(f, **{key: np.stack([o[key] for o in self.kept]) for key in self.kept[0]})
        return len(self.kept)


def load_records(path: str | Path) -> list[StepRecord]:
    """Read a `--record` file back."""
    with Path(path).open() as f:
        return [StepRecord(**json.loads(line)) for line in f if line.strip()]
