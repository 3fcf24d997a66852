"""gr00t-fast's side of the A/B against NVIDIA's own pipeline: locate an Isaac-GR00T environment and drive
`upstream_runner.py` (run with that environment's python) through case files and subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RUNNER = Path(__file__).with_name("upstream_runner.py")


@dataclass(frozen=True)
class Upstream:
    """An Isaac-GR00T N1.5 environment: its python and its source root (the `gr00t` package + scripts/)."""

    python: Path
    src: Path

    @classmethod
    def find(cls, python: str | None = None, src: str | None = None) -> "Upstream":
        """From the arguments, else GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC; a source root alone (your own
        Isaac-GR00T checkout) runs with this python (the environment you installed gr00t-fast into beside it).
        ValueError naming what is missing."""
        src = src or os.environ.get("GR00T_UPSTREAM_SRC")
        python = python or os.environ.get("GR00T_UPSTREAM_PYTHON") or (sys.executable if src else None)
        if not python or not src:
            raise ValueError("NVIDIA's pipeline is not configured: give --upstream_src (your Isaac-GR00T N1.5 checkout; "
                             "with --upstream_python when its environment is another one), or time your running "
                             "inference_service.py with --upstream_port")
        if not Path(python).is_file():
            raise ValueError(f"upstream python {python} does not exist")
        if not (Path(src) / "gr00t" / "model" / "policy.py").is_file():
            raise ValueError(f"upstream source {src} has no gr00t/model/policy.py")
        return cls(Path(python), Path(src))

    def env(self, threads: int | None = None, dtype: str = "float32") -> dict[str, str]:
        """The runner's environment (never gr00t-fast's PYTHONPATH); `threads` sets torch's CPU threads there,
        `dtype` NVIDIA's compute dtype (GR00T_COMPUTE_DTYPE: float32 is its CPU default)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(GR00T_UPSTREAM_SRC=str(self.src), GR00T_COMPUTE_DTYPE=dtype, HF_HUB_OFFLINE="1")
        return {**env, "OMP_NUM_THREADS": str(threads)} if threads else env

    def command(self, mode: str, checkpoint: Path, *args: str) -> list[str]:
        return [str(self.python), str(RUNNER), mode, str(checkpoint), *map(str, args)]

    def run(self, mode: str, checkpoint: Path, workdir: Path, *args: Path, timeout_s: float,
            dtype: str = "float32") -> None:
        """The runner's `mode` on `checkpoint` in `workdir`, NVIDIA's model in `dtype` (GR00T_COMPUTE_DTYPE);
        RuntimeError with the end of its stderr where it fails."""
        done = subprocess.run(self.command(mode, checkpoint, *args), env=self.env(dtype=dtype), cwd=workdir,
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"NVIDIA's pipeline ({mode}) failed (exit {done.returncode}):\n{done.stderr[-3000:]}")

    def outputs(self, checkpoint: Path, cases: list[dict[str, Any]], workdir: Path, timeout_s: float = 900,
                dtype: str = "float32") -> dict[str, dict[str, np.ndarray]]:
        """NVIDIA's model inputs and actions per case: {name: {"eagle_input_ids", ..., "action_pred", "action.<key>"}},
        its model in `dtype` (GR00T_COMPUTE_DTYPE)."""
        write_cases(workdir / "cases.npz", cases)
        self.run("outputs", checkpoint, workdir, workdir / "cases.npz", workdir / "upstream.npz", timeout_s=timeout_s,
                 dtype=dtype)
        data = np.load(workdir / "upstream.npz")
        return {c["name"]: {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(c["name"] + "/")}
                for c in cases}

    def evaluation(self, checkpoint: Path, spec: dict[str, Any], workdir: Path, timeout_s: float = 1800,
                   dtype: str = "float32") -> dict:
        """NVIDIA's dataset reader and open-loop evaluation (the runner's `eval` mode), its model in `dtype`
        (GR00T_COMPUTE_DTYPE): {"step": {(episode, index): {key: array}}, "pred": {(episode, point): {key: array}} (its
        policy's answers, with a "noise_seed"), "mse": {episode: float}, "seconds": float}."""
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "eval.json").write_text(json.dumps(spec))
        self.run("eval", checkpoint, workdir, workdir / "eval.json", workdir / "eval.npz", timeout_s=timeout_s,
                 dtype=dtype)
        data = np.load(workdir / "eval.npz")
        found: dict[str, dict] = {"step": {}, "pred": {}}
        for name in data.files:
            if name.startswith(("step/", "pred/")):
                kind, episode, index, key = name.split("/", 3)
                found[kind].setdefault((int(episode), int(index)), {})[key] = data[name]
        return {**found, "mse": {int(n.split("/")[1]): float(data[n]) for n in data.files if n.startswith("mse/")},
                "seconds": float(data["seconds"])}


def write_cases(path: Path, cases: list[dict[str, Any]]) -> None:
    """The runner's case file: `spec` (with a case's "embodiment_tag" and "checkpoint" where it names them) and
    `<name>/<observation key>`, `<name>/noise` (with a batch axis)."""
    arrays: dict[str, np.ndarray] = {"spec": np.array(json.dumps(
        [{"name": c["name"], "data_config": c["data_config"], "steps": c["steps"],
          **{k: str(c[k]) for k in ("embodiment_tag", "checkpoint") if k in c}} for c in cases]))}
    for c in cases:
        arrays.update({f"{c['name']}/{k}": np.asarray(v) for k, v in c["observation"].items()})
        noise = np.asarray(c["noise"], np.float32)
        arrays[f"{c['name']}/noise"] = noise if noise.ndim == 3 else noise[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
