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


# Feetech's SDK gives a servo 50 ms to answer (LeRobot's patch of its packet timeout). A real servo answers within
# a millisecond; the stand-in (`feetech_bus.py`) is a Python thread that must win the GIL from LeRobot's busy-polling
# read loop, its image-writer threads and the model, on a loaded 2-core CI machine: it has missed 50 ms there
# ("There is no status packet!"). Its answers get this much more time (a bus without servos keeps LeRobot's 50 ms:
# there the timeout is the expected outcome).
STAND_IN_BUS_MARGIN_MS = 500.0


@pytest.fixture(autouse=True)
def patient_servo_timeout(monkeypatch):
    """LeRobot's Feetech packet timeout plus `STAND_IN_BUS_MARGIN_MS` on the port of a stand-in bus with servos."""
    if not HAS_LEROBOT:
        return
    from feetech_bus import SimulatedFeetechBus
    from lerobot.motors.feetech import feetech

    lerobots = feetech.patch_setPacketTimeout  # FeetechMotorsBus binds it to its PortHandler when created

    def set_packet_timeout(port_handler, packet_length):  # noqa: N802 - the SDK's name
        lerobots(port_handler, packet_length)
        if port_handler.port_name in SimulatedFeetechBus.answering:
            port_handler.packet_timeout += STAND_IN_BUS_MARGIN_MS

    monkeypatch.setattr(feetech, "patch_setPacketTimeout", set_packet_timeout)


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
