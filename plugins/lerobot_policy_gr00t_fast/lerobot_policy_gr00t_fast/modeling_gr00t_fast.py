"""`Gr00tFastPolicy`: a GR00T N1.5 checkpoint run by gr00t-fast behind LeRobot's `PreTrainedPolicy` interface.

LeRobot hands the policy a batch of `observation.state` (B, joints), `observation.images.<camera>` (B, 3, H, W)
floats in [0, 1] and `task`; gr00t-fast runs the whole GR00T pipeline on it (its own preprocessing, the checkpoint's
normalization) and returns joint targets in the robot's units, clipped to the SO-100/SO-101 travel, from a queue of
`n_action_steps` actions per predicted chunk. Inference only: `forward` (training) raises.

With `lerobot-rollout --inference.type=rtc` LeRobot's RTC engine calls `predict_action_chunk` with the previous
chunk's leftover and the inference delay; gr00t-fast's real-time chunking continues it (`rtc_gr00t_fast`).
"""

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gr00t_fast.loading import load_policy
from gr00t_fast.model.rtc import RTC_CHUNK_KEY
from gr00t_fast.policy.lerobot_mapping import LeRobotMapping
from gr00t_fast.robot.base import ACTION_KEYS
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from lerobot_policy_gr00t_fast.configuration_gr00t_fast import Gr00tFastConfig
from lerobot_policy_gr00t_fast.rtc_gr00t_fast import ChunkPlan


def joint_keys_of(dataset_meta: Any) -> tuple[str, ...]:
    """The robot's "<joint>.pos" action names, from the dataset LeRobot records into; SO-100 order without one."""
    names = getattr(dataset_meta, "features", {}).get(ACTION, {}).get("names") if dataset_meta is not None else None
    return tuple(names) if names else ACTION_KEYS


def frame_of(image: Tensor) -> np.ndarray:
    """LeRobot's (3, H, W) float image in [0, 1] (it divided the camera's uint8 by 255) -> the (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class Gr00tFastPolicy(PreTrainedPolicy):
    """GR00T N1.5 through gr00t-fast, as the LeRobot policy type `gr00t_fast`."""

    config_class = Gr00tFastConfig
    name = "gr00t_fast"

    def __init__(self, config: Gr00tFastConfig, dataset_meta: Any = None, **_: Any):
        super().__init__(config)
        config.validate_features()
        self.gr00t = load_policy(config.model_path, embodiment_tag=config.embodiment_tag,
                                 data_config=config.data_config, denoising_steps=config.denoising_steps,
                                 device=config.device, dtype=config.dtype, backend=config.backend)
        self.joint_keys = joint_keys_of(dataset_meta)
        self.mapping: LeRobotMapping | None = None  # built at the first batch, when the cameras are known
        self._queue: deque[Tensor] = deque(maxlen=config.n_action_steps)
        self._plan = ChunkPlan()  # the last chunk, for LeRobot's RTC engine to continue

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, *, config: Gr00tFastConfig | None = None,
                        **kwargs: Any) -> "Gr00tFastPolicy":
        """The saved folder holds only the config: the weights are the GR00T checkpoint at `config.model_path`."""
        if config is None:  # the base class reads config.json's "type" (the subclass's own parser refuses it)
            config = PreTrainedConfig.from_pretrained(pretrained_name_or_path)
            if not isinstance(config, Gr00tFastConfig):
                raise ValueError(f"{pretrained_name_or_path} holds a {config.type!r} policy config, not gr00t_fast")
        return cls(config, **{k: v for k, v in kwargs.items() if k == "dataset_meta"}).eval()

    def _save_pretrained(self, save_directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """The config only (LeRobot 0.6 passes `state_dict`: there are no weights of this module to write)."""
        self.config._save_pretrained(save_directory)

    def get_optim_params(self) -> dict:
        raise NotImplementedError("gr00t_fast runs GR00T N1.5 for inference only; fine-tune with Isaac-GR00T")

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict | None]:
        raise NotImplementedError("gr00t_fast runs GR00T N1.5 for inference only; fine-tune with Isaac-GR00T")

    def reset(self) -> None:
        self._queue.clear()
        self._plan.clear()

    def supports_rtc(self) -> bool:
        """Whether `lerobot-rollout --inference.type=rtc` can run this policy: the backend runs gr00t-fast's RTC."""
        return self.gr00t.backend.supports_rtc

    def drop_queued_actions(self) -> None:
        """Forget the actions `select_action` still had queued (the next call predicts a new chunk)."""
        self._queue.clear()

    def _mapping(self, cameras: list[str]) -> LeRobotMapping:
        if self.mapping is None:
            self.mapping = LeRobotMapping(self.gr00t, self.joint_keys, cameras, self.config.camera_map,
                                          self.config.use_degrees)
        return self.mapping

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], inference_delay: int | None = None,
                             prev_chunk_left_over: Tensor | None = None, **kwargs: Any) -> Tensor:
        """(B, 16, joints) float32 joint targets, one GR00T call per row, clipped to the arm's travel. LeRobot's RTC
        engine passes `inference_delay` (then B is 1) and the previous chunk's `prev_chunk_left_over`."""
        prefix = f"{OBS_IMAGES}."
        cameras = sorted(key[len(prefix):] for key in batch if key.startswith(prefix))
        mapping = self._mapping(cameras)
        state = batch[OBS_STATE].detach().cpu().numpy().astype(np.float64)
        if inference_delay is not None and state.shape[0] != 1:
            raise ValueError(f"real-time chunking continues one robot's chunk: got a batch of {state.shape[0]}")
        tasks = batch.get("task", "")
        chunks = []
        for row in range(state.shape[0]):
            robot_obs: dict[str, Any] = dict(zip(self.joint_keys, state[row]))
            robot_obs.update({cam: frame_of(batch[prefix + cam][row]) for cam in cameras})
            observation = mapping.observation(robot_obs, tasks if isinstance(tasks, str) else tasks[row])
            if inference_delay is None:
                output = self.gr00t.get_action(observation)
            else:
                rtc = self._plan.request(self.config.rtc_mode, prev_chunk_left_over, inference_delay,
                                         getattr(self.config, "rtc_config", None))
                output = self.gr00t.get_action(observation, rtc=rtc)
            chunks.append(mapping.actions(output))
        result = torch.from_numpy(np.stack(chunks)).float()
        if inference_delay is not None:
            self._plan.keep(result[0], output[RTC_CHUNK_KEY])
        return result

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        """The next (B, joints) action: a new chunk when the queue of `n_action_steps` actions is empty."""
        if not self._queue:
            chunk = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._queue.extend(chunk.transpose(0, 1))
        return self._queue.popleft()
