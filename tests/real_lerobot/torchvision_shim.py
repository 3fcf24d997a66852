"""Test- and benchmark-only shim: the only torchvision 0.28 (the release for torch 2.13) on the package index is the CUDA build.
Installed without its CUDA libraries beside CPU torch, its import fails registering fake kernels for its C++ ops
(`RuntimeError: operator torchvision::nms does not exist`). Defining those two operators' schemas first lets the
import through; LeRobot's robot, camera, motor and policy code never calls them.

Importing this module applies it where needed (only where `import torchvision` fails as installed):
    PYTHONPATH=tests/real_lerobot python -c "import torchvision_shim; ..."
"""

import importlib.util


def torchvision_imports() -> bool:
    """Whether torchvision imports as installed (checked in a fresh interpreter: a failed import is not undone)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0


if importlib.util.find_spec("torchvision") is not None and not torchvision_imports():
    import torch

    _torchvision_shim = torch.library.Library("torchvision", "DEF")
    _torchvision_shim.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_shim.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
