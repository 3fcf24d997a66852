"""The real-LeRobot suite: runs where LeRobot is installed (`bash .ci/lerobot_env.sh` builds such an environment),
skips everywhere else.

The torchvision import needs `torchvision_shim` here (see there).
"""

import importlib.util

import pytest

HAS_LEROBOT = importlib.util.find_spec("lerobot") is not None

if HAS_LEROBOT:
    import torchvision_shim  # noqa: F401 - applies itself where needed


def pytest_collection_modifyitems(config, items):
    if HAS_LEROBOT:
        return
    skip = pytest.mark.skip(reason="LeRobot is not installed here (bash .ci/lerobot_env.sh builds the environment)")
    for item in items:
        if "tests/real_lerobot/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def patient_servo_timeout(monkeypatch):
    """The stand-in servos' replies waited for past LeRobot's packet timeout (`feetech_bus.patient`)."""
    if not HAS_LEROBOT:
        return
    from feetech_bus import patient
    from lerobot.motors.feetech import feetech

    monkeypatch.setattr(feetech, "patch_setPacketTimeout", patient(feetech.patch_setPacketTimeout))


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
