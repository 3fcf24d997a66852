"""The real-LeRobot suite: runs where LeRobot is installed (`bash .ci/lerobot_env.sh` builds such an environment),
skips everywhere else.

Test-only shim: the only torchvision 0.28 (the release for torch 2.13) on the package index is the CUDA build.
Installed without its CUDA libraries beside CPU torch, its import fails registering fake kernels for its C++ ops
(`RuntimeError: operator torchvision::nms does not exist`). Defining those two operators' schemas first lets the
import through; LeRobot's robot, camera, motor and policy code never calls them.
"""

import importlib.util

import pytest

HAS_LEROBOT = importlib.util.find_spec("lerobot") is not None

def torchvision_imports() -> bool:
    """Whether torchvision imports as installed (checked in a fresh interpreter: a failed import is not undone)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0


if HAS_LEROBOT and importlib.util.find_spec("torchvision") is not None and not torchvision_imports():
    import torch

    _torchvision_shim = torch.library.Library("torchvision", "DEF")
    _torchvision_shim.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_shim.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")


def pytest_collection_modifyitems(config, items):
    if HAS_LEROBOT:
        return
    skip = pytest.mark.skip(reason="LeRobot is not installed here (bash .ci/lerobot_env.sh builds the environment)")
    for item in items:
        if "tests/real_lerobot/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture
def camera(monkeypatch):
    """OpenCV's VideoCapture answered by `StandInCamera`."""
    from lerobot.cameras.opencv import camera_opencv
    from stand_ins import StandInCamera

    monkeypatch.setattr(camera_opencv.cv2, "VideoCapture", StandInCamera)


@pytest.fixture
def bus():
    """Six calibrated STS3215 servos at rest behind a pty."""
    from feetech_bus import SimulatedFeetechBus
    from stand_ins import CALIBRATION, MOTOR_IDS, REST

    simulated = SimulatedFeetechBus({MOTOR_IDS[n]: c for n, c in CALIBRATION.items()},
                                    {MOTOR_IDS[n]: p for n, p in REST.items()})
    yield simulated
    simulated.close()
