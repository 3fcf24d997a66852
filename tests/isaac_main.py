"""NVIDIA's current client, Isaac-GR00T main's own `PolicyClient` (`../shared/isaac_main`, or
$GR00T_ISAAC_MAIN_SRC), and observations as it sends them (msgpack-numpy arrays, the N1.6/N1.7 nested shape): shared
by tests/serve and tests/fleet. It needs msgpack-numpy; `client_module` skips the test where it or the source is
missing."""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest

from shared_data import shared_path

INSTRUCTION = "pick up the cube"


def client_module():
    """`gr00t.policy.server_client` from Isaac-GR00T main."""
    pytest.importorskip("msgpack_numpy", reason="NVIDIA's current client needs msgpack-numpy")
    source = os.environ.get("GR00T_ISAAC_MAIN_SRC") or str(shared_path("isaac_main"))
    sys.path.insert(0, source)
    try:
        return importlib.import_module("gr00t.policy.server_client")
    finally:
        sys.path.remove(source)


def nvidia_client(port: int, **kwargs):
    return client_module().PolicyClient(host="127.0.0.1", port=port, timeout_ms=120_000, strict=False, **kwargs)


def nested_observation(seed: int, cameras=("webcam",), batch: int = 1) -> dict:
    """An observation as NVIDIA's current client sends it: (B, T=1, ...) arrays, (B, 1) instructions."""
    rng = np.random.default_rng(seed)
    return {"video": {camera: rng.integers(0, 256, (batch, 1, 480, 640, 3), dtype=np.uint8) for camera in cameras},
            "state": {"single_arm": rng.uniform(-90, 90, (batch, 1, 5)).astype(np.float32),
                      "gripper": rng.uniform(0, 100, (batch, 1, 1)).astype(np.float32)},
            "language": {"annotation.human.task_description": [[INSTRUCTION]] * batch}}


def flat(observation: dict) -> dict:
    """The same observation in N1.5's flat keys, for the in-process policy."""
    out = {f"video.{k}": v for k, v in observation["video"].items()}
    out.update({f"state.{k}": v for k, v in observation["state"].items()})
    (rows,) = observation["language"].values()
    out["annotation.human.task_description"] = [row[0] for row in rows]
    return out
